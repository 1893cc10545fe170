package cli_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/cli"
	"realtime/06-grpc/internal/testkit"
)

var natsFor = regexp.MustCompile(`NATS for other servers on (\S+)`)

// startCluster runs three servers on one log: the first with NATS embedded,
// listening for the other two, which connect to it.
func startCluster(t *testing.T) (servers []*program, urls []string) {
	t.Helper()
	nats := []string{"-nats", "embedded", "-nats-listen", "127.0.0.1:0"}
	for range 3 {
		srv := start(t, cli.RunServer, append([]string{"server", "-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0"}, nats...)...)
		srv.waitForLines(t, 1) // or the test stops with the reason the server did not start
		srv.stdout.WaitFor(t, "serving on")
		if len(servers) == 0 {
			nats = []string{"-nats", natsFor.FindStringSubmatch(srv.stdout.String())[1]}
		}
		servers, urls = append(servers, srv), append(urls, servingOn.FindStringSubmatch(srv.stdout.String())[1])
	}
	return servers, urls
}

func TestCluster_WhatIsTypedIntoAnyServerReachesClientsOfEvery(t *testing.T) {
	servers, urls := startCluster(t)
	var clients []*program
	for _, url := range urls {
		clients = append(clients, start(t, cli.RunClient, "client", "-server", url, "-strategy", "sse"))
	}

	servers[1].type_(t, "typed into the second")
	servers[1].stdout.WaitFor(t, "published 1")
	servers[2].type_(t, "typed into the third")

	for i, c := range clients {
		got := c.waitForLines(t, 2)
		if diff := cmp.Diff([]string{"1 typed into the second", "2 typed into the third"}, got); diff != "" {
			t.Errorf("client of server %d: mismatch (-want +got):\n%s", i+1, diff)
		}
	}
}

func TestCluster_AClientMovedToAnotherServerResumesWithNoLossAndNoDuplicate(t *testing.T) {
	servers, urls := startCluster(t)
	client := start(t, cli.RunClient, "client", "-server", urls[1], "-strategy", "sse")
	servers[0].type_(t, "a")
	servers[0].stdout.WaitFor(t, "published 1")
	servers[0].type_(t, "b")
	client.waitForLines(t, 2)
	require.NoError(t, client.stop(t))
	client.stderr.WaitFor(t, "resume with -after")
	cursor := regexp.MustCompile(`resume with -after (\S+)`).FindStringSubmatch(client.stderr.String())[1]

	servers[2].type_(t, "c") // while no client is connected
	servers[2].stdout.WaitFor(t, "published 3")
	moved := start(t, cli.RunClient, "client", "-server", urls[2], "-strategy", "sse", "-after", cursor)
	servers[1].type_(t, "d")

	got := moved.waitForLines(t, 2)
	if diff := cmp.Diff([]string{"3 c", "4 d"}, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	assert.NotContains(t, moved.stderr.String(), "gap")
	assert.True(t, strings.HasSuffix(cursor, "-2"), "the cursor names the run and update 2: %s", cursor)
}

func TestCluster_AServerWhoseNATSCannotBeReachedSaysSoAndStops(t *testing.T) {
	var stdout, stderr testkit.Buffer
	err := cli.RunServer(context.Background(), []string{"server", "-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0", "-nats", "nats://127.0.0.1:1"},
		strings.NewReader(""), &stdout, &stderr)

	assert.ErrorContains(t, err, "-nats nats://127.0.0.1:1: nats: no servers available for connection")
	assert.NotContains(t, stdout.String(), "serving on")
}

func TestCluster_AnEmbeddedNATSThatCannotListenSaysWhyAtOnce(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()

	var stdout, stderr testkit.Buffer
	err = cli.RunServer(context.Background(), []string{"server", "-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0", "-nats", "embedded", "-nats-listen", taken.Addr().String()},
		strings.NewReader(""), &stdout, &stderr)

	assert.ErrorContains(t, err, "address already in use")
	assert.NotContains(t, stdout.String(), "serving on")
}

func TestCluster_AWebhookRegisteredOnOneServerIsKnownToEvery(t *testing.T) {
	_, urls := startCluster(t)
	resp, err := http.Post(urls[0]+"/webhooks", "application/json", strings.NewReader(`{"url":"http://127.0.0.1:9/hook"}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	var reg struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&reg))

	for _, url := range urls[1:] {
		deadline := time.Now().Add(testkit.WaitTimeout)
		for {
			resp, err := http.Get(url + "/webhooks/" + reg.ID)
			require.NoError(t, err)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			require.False(t, time.Now().After(deadline), "%s still answers %d for %s after %v", url, resp.StatusCode, reg.ID, testkit.WaitTimeout)
			time.Sleep(time.Millisecond) // a bounded poll: the registration reaches it through the broker
		}
	}
}

func TestCluster_AnErrorDoesNotRepeatTheNATSPassword(t *testing.T) {
	var stdout, stderr testkit.Buffer
	err := cli.RunServer(context.Background(), []string{"server", "-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0", "-nats", "nats://realtime:s3cret@127.0.0.1:1"},
		strings.NewReader(""), &stdout, &stderr)

	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret")
	assert.Contains(t, err.Error(), "-nats nats://realtime:xxxxx@127.0.0.1:1:", "which NATS, and as whom")
}
