package server

import (
	"embed"
	"net/http"
)

// pageFiles is the browser page: plain HTML and JavaScript, no build step.
//
//go:embed page
var pageFiles embed.FS

// pagePolicy is the page's Content-Security-Policy. The page loads only its
// own scripts and style from /page/ and talks only to this server, so
// 'self' is all it needs; should an update ever slip into the HTML, no
// inline or foreign script runs. frame-ancestors 'none' keeps other sites
// from framing the publish box under a decoy (clickjacking).
const pagePolicy = "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// handlePage serves the browser page at /.
func handlePage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", pagePolicy)
		http.ServeFileFS(w, r, pageFiles, "page/index.html")
	})
}

// handlePageFiles serves the page's scripts and style under /page/.
func handlePageFiles() http.Handler {
	return http.FileServerFS(pageFiles)
}
