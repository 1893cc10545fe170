package natsfeed

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StopFollowing stops l's consumer, as a broker that takes updates but
// stops delivering them does.
func StopFollowing(l *Log) { l.stop(l.run.Load()) }

// Stopped returns a channel closed once l's consumer has stopped: Close
// waits for it only within the timeout.
func Stopped(l *Log) <-chan struct{} { return l.run.Load().follow.Closed() }

// Deliver hands l's consumer callback a message with the given stream id
// and data, as the ordered consumer would.
func Deliver(l *Log, id uint64, data string) {
	l.run.Load().add(message{meta: &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: id}, Timestamp: time.Now()}, data: []byte(data)})
}

// message is a stream message made by a test: the two things add reads.
type message struct {
	jetstream.Msg
	meta *jetstream.MsgMetadata
	data []byte
}

func (m message) Metadata() (*jetstream.MsgMetadata, error) { return m.meta, nil }
func (m message) Data() []byte                              { return m.data }
