//go:build unix

package main

import "syscall"

// openFileLimit is this process's limit on open files, which the load
// generator inherits (Go raises the soft limit to the hard one); 0 where
// unknown.
func openFileLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return int(min(lim.Max, 1<<30))
}
