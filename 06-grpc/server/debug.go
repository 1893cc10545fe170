package server

import (
	"net/http"
	"runtime"
)

// RuntimeStats answers with the server's goroutine count and memory, so a
// load test can measure what each held connection costs. It collects garbage
// first, so that the heap figure is memory in use, not garbage waiting to be
// swept. It is mounted only with the server's -debug flag: it tells a
// stranger more than they need, and a collection is not free.
func RuntimeStats() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		var mem runtime.MemStats
		runtime.ReadMemStats(&mem)
		writeJSON(w, http.StatusOK, map[string]uint64{
			"goroutines":        uint64(runtime.NumGoroutine()),
			"heap_inuse_bytes":  mem.HeapInuse,
			"stack_inuse_bytes": mem.StackInuse,
			"sys_bytes":         mem.Sys,
		})
	})
}
