// Package fuzz holds fuzz targets for every parser of untrusted input in
// the final chapter (06-grpc), through its exported API and its real
// handlers: cursors, query parameters, Last-Event-ID, publish and webhook
// registration bodies, WebSocket messages, and webhook signatures. The
// event-stream parser's target lives beside the parser
// (06-grpc/client/eventstream_test.go, FuzzEventStream).
//
// Their seeds run with every go test; scripts/fuzz.sh fuzzes each target
// for a while:
//
//	scripts/fuzz.sh 10m    # each target for ten minutes
package fuzz
