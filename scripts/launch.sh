#!/bin/sh
# Entrypoint of the weave-npc-py image, as weave's prog/weave-npc/launch.sh: the flags in
# $EXTRA_ARGS come first, then the container's args, so an arg in the manifest overrides
# the same flag in EXTRA_ARGS.
#
# EXTRA_ARGS is split into words on purpose, so one variable carries several flags
# (EXTRA_ARGS="--log-level=debug --allow-mcast=false"); globbing is off, so a '*' stays a
# '*'.  A value containing spaces cannot be passed this way: put that flag in the args.
# weave-npc also reads EXTRA_ARGS itself (for when it is run without this script), so it
# is taken out of the environment here: the flags are passed once.
#
# IPTABLES_BACKEND (nft or legacy) is left in the environment, where npc reads it.
set -eu
set -f
extra_args=${EXTRA_ARGS:-}
unset EXTRA_ARGS
# shellcheck disable=SC2086 # word splitting of EXTRA_ARGS is the point
exec weave-npc $extra_args "$@"
