// Package calc is a fixture: chapter 02 fixes Abs.
package calc

// Add returns a+b.
func Add(a, b int) int { return a + b }

// Abs returns |n|.
func Abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
