"""Paxos over gossip (router.ipam.paxos): the rules step by step, the wire form against
Go's gob fixtures, the quorum rules, Go's random-network scenario, and a hypothesis
simulation with loss, duplication, reordering and restarts checking safety and liveness.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.ipam.messages import (
    GOSSIP_STATE,
    AcceptedValue,
    GossipState,
    NodeClaims,
    NodeID,
    ProposalID,
    decode_gossip_state,
    encode_gossip_state,
)
from router.ipam.paxos import (
    NO_CLAIMS,
    NO_VALUE,
    Node,
    Observer,
    Participant,
    PaxosStatus,
    consensus_quorum,
    go_quorum,
    kube_quorum,
    normalize_consensus,
    precedes,
)
from router.mesh.gob import TypeIds
from tests.router.gob_samples import from_json, load_fixtures, stream_bytes
from tests.router.ipam.paxos_sim import Network


def proposal(round_: int, name: int, uid: int) -> ProposalID:
    return ProposalID(round_, NodeID(name, uid))


def send(source: Node, dest: Node) -> None:
    """One gossip, handled as the allocator does."""
    if dest.update(source.gossip_state()):
        dest.think()


def settle(*nodes: Node) -> None:
    """Gossip between every pair until nobody learns anything more."""
    learned = True
    while learned:
        learned = False
        for source in nodes:
            for dest in nodes:
                if dest is not source and dest.update(source.gossip_state()):
                    dest.think()
                    learned = True


# -- the rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b", "expected"), [
    (proposal(1, 5, 5), proposal(2, 1, 1), True),
    (proposal(2, 1, 1), proposal(1, 5, 5), False),
    (proposal(1, 1, 9), proposal(1, 2, 1), True),
    (proposal(1, 2, 1), proposal(1, 2, 2), True),
    (proposal(1, 2, 2), proposal(1, 2, 2), False),
    (proposal(0, 0, 0), proposal(1, 0, 0), True),
], ids=["round", "round-beats-name", "name", "uid", "equal", "zero-first"])
def test_proposals_are_ordered_by_round_then_name_then_uid(
        a: ProposalID, b: ProposalID, expected: bool) -> None:
    assert precedes(a, b) is expected


def test_a_single_node_agrees_with_itself_at_once() -> None:
    node = Node(7, 70, quorum=1)
    node.propose()
    agreed, value = node.consensus()
    assert agreed and value == AcceptedValue((7,), proposal(1, 7, 70))


def test_proposing_needs_a_quorum() -> None:
    with pytest.raises(ValueError, match="quorum"):
        Node(1, 1).propose()


def test_a_node_without_quorum_promises_and_accepts_but_never_reports() -> None:
    proposer, acceptor = Node(1, 10, quorum=2), Node(2, 20)
    proposer.propose()
    send(proposer, acceptor)
    assert acceptor.claims(acceptor.id).promise == proposal(1, 1, 10)
    send(acceptor, proposer)
    send(proposer, acceptor)
    assert acceptor.claims(acceptor.id).accepted == proposal(1, 1, 10)
    send(acceptor, proposer)
    assert proposer.consensus()[0]
    assert acceptor.consensus() == (False, NO_VALUE)


def test_two_nodes_agree_on_both_names() -> None:
    a, b = Node(1, 10, quorum=2), Node(2, 20, quorum=2)
    a.propose()
    assert a.consensus() == (False, NO_VALUE)
    send(a, b)  # b promises
    send(b, a)  # a has a quorum of promises: it accepts, and knows it is alone so far
    assert a.consensus() == (False, NO_VALUE)
    send(a, b)  # b accepts too: b sees the consensus first
    assert b.consensus()[0]
    send(b, a)
    expected = AcceptedValue((1, 2), proposal(1, 1, 10))
    assert a.consensus() == (True, expected) == b.consensus()


def test_the_highest_proposal_wins_and_a_superseded_proposer_stands_down() -> None:
    a, b = Node(1, 10, quorum=2), Node(2, 20, quorum=2)
    a.propose()
    b.propose()  # same round, higher name
    send(a, b)
    assert b.claims(b.id).promise == proposal(1, 2, 20)
    send(b, a)
    assert a.claims(a.id).promise == proposal(1, 2, 20)
    send(a, b)
    assert b.claims(b.id).accepted == proposal(1, 2, 20)
    send(b, a)
    send(a, b)
    assert a.consensus() == b.consensus() == (True, AcceptedValue((1, 2), proposal(1, 2, 20)))


def test_a_later_proposal_carries_the_value_already_accepted() -> None:
    a, b, c = (Node(n, n * 10, quorum=2) for n in (1, 2, 3))
    a.propose()
    send(a, b)
    send(b, a)  # a accepts (1, a) with {a, b}
    c.propose()
    send(a, c)
    c.propose()  # round 2, above a's
    send(c, a)
    send(a, c)  # c accepts its proposal 2, with the value a accepted in proposal 1
    assert c.claims(c.id).accepted_val == AcceptedValue((1, 2), proposal(1, 1, 10))
    send(c, a)
    agreed, value = a.consensus()
    assert agreed and value == AcceptedValue((1, 2), proposal(1, 1, 10))


def test_update_only_moves_claims_forward() -> None:
    node = Node(1, 10, quorum=2)
    later = NodeClaims(proposal(3, 2, 20), proposal(2, 2, 20),
                       AcceptedValue((2,), proposal(2, 2, 20)))
    earlier = NodeClaims(proposal(1, 2, 20), NO_CLAIMS.accepted, NO_VALUE)
    assert node.update({NodeID(2, 20): later})
    assert not node.update({NodeID(2, 20): earlier})
    assert not node.update({NodeID(2, 20): later})
    assert node.claims(NodeID(2, 20)) == later
    mixed = NodeClaims(proposal(4, 3, 30), proposal(1, 1, 1), NO_VALUE)
    assert node.update({NodeID(2, 20): mixed})
    assert node.claims(NodeID(2, 20)) == NodeClaims(proposal(4, 3, 30), later.accepted,
                                                    later.accepted_val)


def test_think_reports_no_change_when_there_is_none() -> None:
    node = Node(1, 10, quorum=3)
    assert not node.think()
    assert node.gossip_state() == {}
    node.propose()
    assert not node.think()


def test_the_value_names_every_incarnation_and_normalises_to_unique_peers() -> None:
    restarted, node = Node(2, 22, quorum=2), Node(5, 50, quorum=2)
    node.update({NodeID(2, 21): NO_CLAIMS})  # heard of peer 2's previous process
    node.propose()
    settle(node, restarted)
    agreed, value = node.consensus()
    assert agreed and value.value == (2, 2, 5)
    assert normalize_consensus(value.value) == (2, 5)


def test_gossip_state_is_a_copy() -> None:
    node = Node(1, 10, quorum=2)
    node.propose()
    state = node.gossip_state()
    state.clear()
    assert node.gossip_state()


def test_an_observer_never_votes() -> None:
    observer: Participant = Observer()
    node = Node(1, 10, quorum=1)
    node.propose()
    observer.set_quorum(1)
    observer.propose()
    assert not observer.update(node.gossip_state())
    assert not observer.think()
    assert observer.consensus() == (False, NO_VALUE)
    assert observer.gossip_state() is None
    assert not observer.is_elector
    assert not node.update(observer.gossip_state())


@pytest.mark.parametrize(("participant", "text", "report"), [
    (Node(1, 1, quorum=2), "awaiting consensus (quorum: 2, known: 0)",
     {"Elector": True, "KnownNodes": 0, "Quorum": 2}),
    (Observer(), "priming", {"Elector": False, "KnownNodes": 0, "Quorum": 0}),
], ids=["elector", "observer"])
def test_status(participant: Participant, text: str, report: dict[str, object]) -> None:
    status = participant.status()
    assert status.text() == text and status.as_report() == report


def test_status_counts_known_nodes() -> None:
    a, b = Node(1, 10, quorum=3), Node(2, 20, quorum=3)
    a.propose()
    send(a, b)
    assert b.status() == PaxosStatus(elector=True, known_nodes=2, quorum=3)


# -- wire form ---------------------------------------------------------------------------


GO_FIRST_ID = 64
"""The Go that wrote the fixtures numbers user types from 64."""


def go_fixture(name: str) -> tuple[bytes, GossipState]:
    case = next(c for c in load_fixtures() if c["name"] == name)
    stream = case["streams"][0]
    value: GossipState = from_json(GOSSIP_STATE, stream["items"][0]["value"])
    return stream_bytes(case, stream), value


def test_a_fresh_proposal_encodes_as_gos() -> None:
    data, _ = go_fixture("ipam_gossip_paxos_one_node")
    node = Node(1, 2, quorum=2)
    node.propose()
    ours = GossipState(now=1700000000, nicknames={1: "a"}, paxos=node.gossip_state(), ring=None)
    assert encode_gossip_state(ours, type_ids=TypeIds(GO_FIRST_ID)) == data


def test_an_observer_encodes_as_gos() -> None:
    data, _ = go_fixture("ipam_gossip_observer")
    ours = GossipState(now=-5, nicknames=None, paxos=Observer().gossip_state(), ring=None)
    assert encode_gossip_state(ours, type_ids=TypeIds(GO_FIRST_ID)) == data


def test_a_node_takes_in_gos_gossip() -> None:
    data, _ = go_fixture("ipam_gossip_paxos")
    received = decode_gossip_state(data).paxos
    assert received is not None
    node = Node(46179488366593, 7, quorum=2)
    assert node.update(received)
    node.think()
    go_proposer = NodeID(226713607226650, 2**64 - 1)
    assert node.claims(node.id).accepted == proposal(2, go_proposer.name, go_proposer.uid)
    agreed, value = node.consensus()
    assert agreed and normalize_consensus(value.value) == (46179488366593, 226713607226650)
    echoed = GossipState(now=0, nicknames=None, paxos=node.gossip_state(), ring=None)
    assert decode_gossip_state(encode_gossip_state(echoed)) == echoed


# -- quorum rules ------------------------------------------------------------------------


@pytest.mark.parametrize(("consensus", "targets", "expected"), [
    (1, 0, 1), (2, 0, 2), (3, 0, 2), (4, 0, 3), (5, 9, 3),
    (0, 0, 1), (0, 1, 2), (0, 2, 2), (0, 3, 3), (0, 4, 3),
], ids=lambda v: str(v))
def test_go_quorum(consensus: int, targets: int, expected: int) -> None:
    assert go_quorum(consensus, targets) == expected


@pytest.mark.parametrize(("nodes", "go_kube", "ours"), [
    (1, 1, 1), (2, 1, 2), (3, 2, 2), (4, 2, 3), (5, 3, 3), (6, 3, 4), (7, 4, 4),
], ids=lambda v: str(v))
def test_kube_quorum_is_a_majority_counting_this_node(nodes: int, go_kube: int,
                                                      ours: int) -> None:
    kube_peers = nodes - 1  # launch.sh: consensus=<number of KUBE_PEERS>, self excluded
    assert go_quorum(kube_peers, kube_peers) == go_kube
    assert kube_quorum(nodes) == ours
    assert 2 * ours > nodes  # any two quorums share a node


def test_quorum_rules_refuse_empty_clusters() -> None:
    with pytest.raises(ValueError):
        kube_quorum(0)
    with pytest.raises(ValueError):
        consensus_quorum(0)


# -- Go's random-network scenario (paxos_test.go), in our own terms ---------------------


def random_links(count: int, rng: random.Random) -> list[tuple[int, int]]:
    """A random connected graph: each node links to each earlier one with probability
    1/2, and to one at random if that gave it none."""
    links: list[tuple[int, int]] = []
    for index in range(1, count):
        linked = [other for other in range(index) if rng.random() < 0.5]
        for other in linked or [rng.randrange(index)]:
            links += [(index, other), (other, index)]
    return links


def run_random_network(count: int, seed: int) -> None:
    """Gossip along random links, with random re-proposals and isolations (never below
    a quorum), until every node knows the consensus; all must agree."""
    rng = random.Random(seed)
    network = Network(count, consensus_quorum(count))
    links = random_links(count, rng)
    isolated: set[int] = set()
    for index in range(count):
        network.propose(index)
    network.in_flight.clear()
    live = list(range(count))
    for _step in range(20000):
        live = [i for i in range(count) if i not in isolated]
        if all(network.has_consensus(i) for i in live):
            break
        source, dest = rng.choice(links)
        if source in isolated or dest in isolated:
            continue
        network.receive(dest, network.nodes[source].gossip_state())
        if rng.random() < 0.01:
            network.propose(rng.choice(live))
        if len(live) > network.quorum and rng.random() < 0.01:
            victim = rng.choice(live)
            isolated.add(victim)
            neighbours = [d for s, d in links if s == victim and d not in isolated]
            # keep the rest connected, as Go's model does
            links += [(a, b) for a in neighbours for b in neighbours if a != b]
            network.propose(rng.choice([i for i in live if i != victim]))
        network.in_flight.clear()
    else:
        pytest.fail(f"seed {seed}: no consensus after 20000 gossips")
    assert len(network.agreed_values()) == 1
    assert {network.nodes[i].consensus()[1] for i in live} == network.agreed_values()


def test_go_single_node_scenario() -> None:
    run_random_network(1, seed=1)


@pytest.mark.parametrize("seed", range(25))
def test_go_random_network_scenario(seed: int) -> None:
    run_random_network(10, seed)


# -- hypothesis: safety and liveness under loss, duplication, reordering, restarts ------

ACTIONS = ("deliver",) * 6 + ("duplicate", "drop", "propose", "gossip", "restart")


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, int, list[tuple[str, int, int]], int, int]:
    """(nodes, restarts allowed, chaos actions, nodes connected afterwards, seed).

    The quorum is a majority of every incarnation that may ever exist (nodes plus
    restarts): a restarted process is a new acceptor that forgot its promises, and no
    quorum rule can be safe once forgetful incarnations outnumber that majority."""
    count = draw(st.integers(2, 7))
    restarts = draw(st.integers(0, max(0, count - 2)))
    actions = draw(st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, 99),
                                      st.integers(0, 99)), max_size=120))
    quorum = kube_quorum(count + restarts)
    connected = draw(st.integers(quorum, count))
    return count, restarts, actions, connected, draw(st.integers(0, 2**16))


def play(network: Network, restarts: int, actions: list[tuple[str, int, int]]) -> None:
    count = len(network.nodes)
    for kind, a, b in actions:
        if kind in ("deliver", "duplicate", "drop"):
            if not network.in_flight:
                continue
            position = a % len(network.in_flight)
            if kind == "drop":
                network.drop(position)
            else:
                network.deliver(position, keep=kind == "duplicate")
        elif kind == "propose":
            network.propose(a % count)
        elif kind == "gossip":
            network.gossip(a % count, b % count)
        elif network.restarts < restarts:
            network.restart(a % count)
        assert len(network.agreed_values()) <= 1, network.reports


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_safety_and_liveness(scenario: tuple[int, int, list[tuple[str, int, int]], int, int],
                             ) -> None:
    count, restarts, actions, connected, seed = scenario
    network = Network(count, kube_quorum(count + restarts))
    play(network, restarts, actions)
    # Then a quorum (at least) is connected and gossip is fair: every connected node
    # proposes on its retry tick, and must know the consensus within three ticks.
    members = random.Random(seed).sample(range(count), connected)
    for _tick in range(3):
        for index in members:
            network.propose(index)
        network.exchange_until_quiet(members)
        assert len(network.agreed_values()) <= 1, network.reports
        if all(network.has_consensus(i) for i in members):
            break
    else:
        pytest.fail(f"no consensus among {members} after three ticks")
    assert {network.nodes[i].consensus()[1] for i in members} == network.agreed_values()




# -- where we differ from Go: what counts as consensus -----------------------------------


def go_origin_consensus(node: Node) -> AcceptedValue | None:
    """Go 2.8.1's Consensus rule, on ``node``'s knowledge: a quorum of nodes that accepted
    values of the same origin, whichever proposal they accepted it in."""
    counts: dict[ProposalID, int] = {}
    for claims in node.gossip_state().values():
        if claims.accepted.round > 0:
            origin = claims.accepted_val.origin
            counts[origin] = counts.get(origin, 0) + 1
            if counts[origin] >= node.quorum:
                return claims.accepted_val
    return None


def test_acceptances_from_different_proposals_do_not_add_up() -> None:
    """Three nodes, no loss, no restart: only slow gossip and retry ticks. Counting
    acceptances by origin, as Go does, makes c and then a report different consensus
    values (in weave: two rings, "IP allocation was seeded by different peers")."""
    a, b, c = (Node(n, n * 11, quorum=2) for n in (1, 2, 3))
    a.propose()
    send(a, b)
    send(b, a)  # a accepts its proposal 1 with {a, b}; nobody hears of it
    b.propose()  # b's retry tick: proposal 2
    send(b, c)
    send(c, b)  # b accepts proposal 2 with {a, b, c}; nobody hears of it
    c.propose()  # c's retry tick: proposal 3
    c_proposing = c.gossip_state()
    send(c, a)
    send(a, c)  # a promised 3 and had accepted 1: c accepts 3 with a's value
    assert go_origin_consensus(c) == a.claims(a.id).accepted_val  # Go: c agrees {a, b}
    b.update(c_proposing)  # b hears of proposal 3 (not of c accepting it)
    b.think()
    b.propose()  # proposal 4
    send(b, a)
    send(a, b)  # a promised 4; b's accepted 2 is the latest among a and b: value {a, b, c}
    send(b, a)  # a accepts 4
    send(a, b)
    go_a, go_c = go_origin_consensus(a), go_origin_consensus(c)
    assert go_a is not None and go_c is not None and go_a.value != go_c.value
    assert not c.consensus()[0]
    assert a.consensus() == b.consensus() == (True, go_a)


def test_a_restart_forgets_promises_so_quorums_must_count_incarnations() -> None:
    """Why the simulation's quorum is a majority of nodes plus restarts: a restarted
    process is a new acceptor that forgot what its predecessor accepted. With a
    majority of the nodes alone (Go's rule), a and b agree, b restarts before its
    acceptance spreads, and the new b and c agree on something else. In weave the
    first agreement creates and persists a ring, which narrows but does not close
    this window."""
    a, b, c = (Node(n, n * 11, quorum=2) for n in (1, 2, 3))
    a.propose()
    settle(a, b)
    assert a.consensus()[0] and b.consensus()[0]
    b = Node(2, 23, quorum=2)  # restarted: same name, new UID, nothing remembered
    b.propose()
    c.propose()
    settle(b, c)
    assert c.consensus()[0] and c.consensus()[1] != a.consensus()[1]
