// Package sub is new in chapter 02.
package sub

// Sub returns a-b.
func Sub(a, b int) int { return a - b }
