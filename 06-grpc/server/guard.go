package server

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"realtime/06-grpc/feed"
)

// guard wraps every route with what makes a server on this machine safe to
// run beside a browser, which runs pages from anywhere:
//
//   - A Host that is not one of the server's names is refused, so a page
//     whose DNS name an attacker rebinds to 127.0.0.1 cannot read the feed:
//     the browser thinks it talks to the attacker's name, and says so in Host.
//   - An unsafe method (POST, PUT, ...) from a page on another origin is
//     refused, so no page can publish through a visitor's browser. Curl,
//     scripts and the Go client send no browser headers and pass.
//   - Every answer says X-Content-Type-Options: nosniff, so no answer (an
//     update a user typed, say) is ever run as a script or a style.
//
// allowedHosts are the names and IP addresses, besides loopback ones, that
// Host may carry (see WithAllowedHosts); allowedOrigins are the origins whose
// pages may write besides the server's own (see WithAllowedOrigins).
func guard(next http.Handler, allowedHosts, allowedOrigins []string) http.Handler {
	names := make(map[string]bool, len(allowedHosts))
	for _, host := range allowedHosts {
		names[canonicalHost(host)] = true
	}
	// Check rather than Handler and a deny handler: the deny handler is
	// not told which check failed, and that is the useful part of the answer.
	crossOrigin := http.NewCrossOriginProtection()
	for _, origin := range allowedOrigins {
		_ = crossOrigin.AddTrustedOrigin(origin) // a malformed origin is never matched
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Set before anything is written, so every answer has it: refusals,
		// 404s, errors, and the head a hijacked stream writes itself from
		// this header map.
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if host := hostOf(r.Host); !isLoopbackName(host) && !names[host] {
			// 421 Misdirected Request, not 403: the request is not
			// forbidden to someone, it is meant for a server with that name,
			// and this is not it (RFC 9110, section 15.5.20).
			http.Error(w, fmt.Sprintf("refused: Host %s is not a name of this server (a guard against DNS rebinding); "+
				"start the server with -allow-host %s to serve it", feed.Quote(r.Host), cut(host)), http.StatusMisdirectedRequest)
			return
		}
		if err := crossOrigin.Check(r); err != nil {
			http.Error(w, fmt.Sprintf("refused %s %s: %v; only this server's own pages may write to it",
				cut(r.Method), cut(r.URL.EscapedPath()), err), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// maxEchoed is how much of a request's own text a refusal repeats: enough to
// recognise it, never a megabyte echoed back.
const maxEchoed = 100

// cut shortens s, a method, an escaped path or a host (ASCII, as net/http
// has checked), to maxEchoed bytes for a refusal's reason.
func cut(s string) string {
	if len(s) <= maxEchoed {
		return s
	}
	return s[:maxEchoed] + "…"
}

// hostOf returns the host of a Host header in canonical form, without its
// port: any port is fine, since only the name tells a rebound request apart.
func hostOf(hostport string) string {
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		return canonicalHost(host)
	}
	return canonicalHost(hostport)
}

// canonicalHost writes a name or an IP address (brackets or not) one way:
// names in lower case, as DNS compares them, and addresses as netip prints
// them.
func canonicalHost(host string) string {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().String()
	}
	return strings.ToLower(host)
}

// isLoopbackName reports whether host, in canonical form, names this
// machine whatever DNS says: browsers resolve localhost to loopback
// themselves (RFC 6761), and an IP address is not looked up at all.
func isLoopbackName(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
