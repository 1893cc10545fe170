package server

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestDestinationAllowed_ByAddressClass(t *testing.T) {
	loopback := DefaultWebhookAllow()
	private := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	everywhere := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	cases := []struct {
		addr  string
		allow []netip.Prefix
		ok    bool
	}{
		{"127.0.0.1:80", loopback, true},
		{"127.10.0.1:80", loopback, true},
		{"[::1]:80", loopback, true},
		{"[::ffff:127.0.0.1]:80", loopback, true}, // IPv4-mapped loopback is loopback
		{"10.0.0.1:80", loopback, false},          // private
		{"172.16.0.1:80", loopback, false},
		{"192.168.1.1:80", loopback, false},
		{"169.254.169.254:80", loopback, false}, // link-local: the cloud metadata service
		{"[fe80::1]:80", loopback, false},
		{"[fd00::1]:80", loopback, false},                // unique local
		{"[::ffff:10.0.0.1]:80", loopback, false},        // IPv4-mapped private
		{"[::ffff:169.254.169.254]:80", loopback, false}, // IPv4-mapped link-local
		{"0.0.0.0:80", loopback, false},                  // unspecified: Linux connects it to this machine
		{"[::]:80", loopback, false},
		{"8.8.8.8:80", loopback, false}, // public
		{"10.0.0.1:80", private, true},
		{"[::ffff:10.0.0.1]:80", private, true},
		{"127.0.0.1:80", private, false}, // the list replaces loopback
		{"8.8.8.8:80", everywhere, true},
		{"0.0.0.0:80", everywhere, false},         // never: not a destination
		{"[::]:80", everywhere, false},            // never
		{"224.0.0.1:80", everywhere, false},       // never: multicast
		{"255.255.255.255:80", everywhere, false}, // never: broadcast
		{"not an address", everywhere, false},
	}
	for _, c := range cases {
		err := destinationAllowed(c.allow, c.addr)
		if c.ok {
			assert.NoError(t, err, "%s with %v", c.addr, c.allow)
		} else {
			assert.Error(t, err, "%s with %v", c.addr, c.allow)
		}
	}
}
