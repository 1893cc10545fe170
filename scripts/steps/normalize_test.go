package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A test against a real server (httptest.NewServer, a 127.0.0.1:0 listener)
// prints a port that differs on every run; a walkthrough shows one run's.
func TestNormalize_LeavesOutTheLoopbackPortsOfRealServers(t *testing.T) {
	shown := `Get "http://127.0.0.1:41711/updates?after=0&wait=300ms": EOF`
	real := `Get "http://127.0.0.1:38005/updates?after=0&wait=300ms": EOF`

	assert.Equal(t, normalize(shown), normalize(real))
	assert.NotEqual(t, normalize(shown), normalize(`Get "http://127.0.0.1:41711/updates?after=1&wait=300ms": EOF`),
		"only the port is left out")
}
