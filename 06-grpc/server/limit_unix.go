//go:build unix

package server

import "syscall"

// openFileLimit returns this process's limit on open files.
func openFileLimit() (uint64, bool) {
	var limit syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &limit); err != nil {
		return 0, false
	}
	return uint64(limit.Cur), true // int64 on some BSDs
}
