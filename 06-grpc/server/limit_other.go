//go:build !unix

package server

// openFileLimit reports that this system has no RLIMIT_NOFILE to ask.
func openFileLimit() (uint64, bool) { return 0, false }
