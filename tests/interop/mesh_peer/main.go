// A weave mesh peer for interoperability checks of router/mesh: one
// mesh.Router (weaveworks/mesh as vendored by weave 2.8.1) on 127.0.0.1 with
// an optional password, logging to stdout, optionally dialling one address.
// Built by build.sh; driven by tests/interop/mesh_handshake.py.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/weaveworks/mesh"
)

func main() {
	port := flag.Int("port", 0, "TCP port to listen on (127.0.0.1)")
	password := flag.String("password", "", "network password (empty: unencrypted)")
	connect := flag.String("connect", "", "address to dial once started (host:port)")
	name := flag.String("name", "00:00:00:00:00:01", "peer name")
	nickname := flag.String("nickname", "go-peer", "peer nickname")
	lifetime := flag.Duration("lifetime", 20*time.Second, "exit after this long")
	flag.Parse()

	peerName, err := mesh.PeerNameFromString(*name)
	if err != nil {
		log.Fatal(err)
	}
	config := mesh.Config{
		Host:               "127.0.0.1",
		Port:               *port,
		ConnLimit:          10,
		ProtocolMinVersion: mesh.ProtocolMinVersion,
		PeerDiscovery:      false,
	}
	if *password != "" {
		config.Password = []byte(*password)
	}
	logger := log.New(os.Stdout, "go-peer: ", log.Lmicroseconds)
	router, err := mesh.NewRouter(config, peerName, *nickname, nil, logger)
	if err != nil {
		log.Fatal(err)
	}
	router.Start()
	fmt.Printf("go-peer: listening on 127.0.0.1:%d\n", *port)
	if *connect != "" {
		for _, err := range router.ConnectionMaker.InitiateConnections([]string{*connect}, false) {
			logger.Printf("connect error: %v", err)
		}
	}
	time.Sleep(*lifetime)
	fmt.Println("go-peer: lifetime over")
}
