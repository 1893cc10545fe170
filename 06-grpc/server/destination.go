package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// DefaultWebhookAllow is where deliveries may go unless told otherwise:
// this machine's loopback addresses, for a receiver beside the server.
func DefaultWebhookAllow() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// WithWebhookAllow sets the only addresses deliveries may go to, replacing
// loopback: a list of prefixes such as 10.0.0.0/8. Some addresses are never
// a destination, whatever the list: unspecified (0.0.0.0 reaches this
// machine on Linux), multicast and broadcast.
func WithWebhookAllow(prefixes ...netip.Prefix) Option {
	return func(c *config) { c.webhookAllow = prefixes }
}

// destinationAllowed says whether address ("IP:port", as a dialer has it
// after resolving a name) may be delivered to.
func destinationAllowed(allow []netip.Prefix, address string) error {
	addrPort, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("destination %q: %w", address, err)
	}
	return addressAllowed(allow, addrPort.Addr())
}

// addressAllowed says whether ip may be delivered to.
func addressAllowed(allow []netip.Prefix, ip netip.Addr) error {
	// An IPv4 address written as IPv6 (::ffff:10.0.0.1) reaches the IPv4
	// host: judge it as that.
	ip = ip.Unmap()
	if ip.IsUnspecified() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return fmt.Errorf("%s is not an allowed destination: not a host", ip)
	}
	for _, prefix := range allow {
		if prefix.Contains(ip) {
			return nil
		}
	}
	return fmt.Errorf("%s is not an allowed destination (allowed: %v)", ip, allow)
}

// webhookDialTimeout bounds connecting to a receiver; the whole attempt is
// bounded by the delivery timeout too.
const webhookDialTimeout = 5 * time.Second

// guardedDialer returns a dial function that refuses addresses outside
// allow. The check runs in Control, after the name was resolved and just
// before the connection is made, on the very address connected to: a check
// at registration alone would let a name that resolved to a public address
// then resolve to 169.254.169.254 when dialled (DNS rebinding).
func guardedDialer(allow []netip.Prefix) func(ctx context.Context, network, addr string) (net.Conn, error) {
	dialer := &net.Dialer{
		Timeout: webhookDialTimeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			return destinationAllowed(allow, address)
		},
	}
	return dialer.DialContext
}
