package natsfeed

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Embedded is a NATS server with JetStream running inside this process, so
// that trying several servers on one log needs nothing installed.
type Embedded struct {
	server *natsserver.Server
}

// StartEmbedded starts a NATS server with JetStream keeping its streams in
// dir. With listen empty, only this process can reach it; with a host and
// port ("127.0.0.1:4222", or port 0 for any free one), other processes
// connect to it there too.
func StartEmbedded(dir, listen string) (*Embedded, error) {
	opts := &natsserver.Options{
		JetStream:  true,
		StoreDir:   dir,
		DontListen: listen == "",
		NoSigs:     true, // this process's signals are its own business
		NoLog:      true,
	}
	if listen != "" {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS server: %w", err)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("embedded NATS server: port %q is not a number", port)
		}
		// A NATS server that cannot listen logs why (this one logs
		// nothing) and never gets ready: try the address first, to say why
		// at once.
		probe, err := net.Listen("tcp", listen)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS server: %w", err)
		}
		probe.Close()
		if opts.Port == 0 {
			opts.Port = natsserver.RANDOM_PORT
		}
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, errors.New("embedded NATS server: not ready after 10s")
	}
	return &Embedded{server: ns}, nil
}

// URL is where other processes connect, or "" if it does not listen.
func (e *Embedded) URL() string {
	if e.server.Addr() == nil {
		return ""
	}
	return e.server.ClientURL()
}

// Connect opens a connection to it from this process, with no network in
// between. Like a connection to a NATS elsewhere, it keeps nothing to send
// while it reconnects: a publish answered with an error must not reach the
// stream later.
func (e *Embedded) Connect() (*nats.Conn, error) {
	return nats.Connect("", nats.InProcessServer(e.server), nats.Name("realtime server"), nats.ReconnectBufSize(-1))
}

// Shutdown stops it and waits until it has stopped.
func (e *Embedded) Shutdown() {
	e.server.Shutdown()
	e.server.WaitForShutdown()
}
