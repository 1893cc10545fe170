package server

import (
	"embed"
	"net/http"
)

// pageFiles is the browser page: plain HTML and JavaScript, no build step.
//
//go:embed page
var pageFiles embed.FS

// handlePage serves the browser page at /.
func handlePage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, pageFiles, "page/index.html")
	})
}

// handlePageFiles serves the page's scripts and style under /page/.
func handlePageFiles() http.Handler {
	return http.FileServerFS(pageFiles)
}
