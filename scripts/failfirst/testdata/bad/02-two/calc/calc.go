// Package calc is a fixture: chapter 02 adds Sub and fixes Abs.
package calc

// Add returns a+b.
func Add(a, b int) int { return a + b }

// Sub returns a-b.
func Sub(a, b int) int { return a - b }

// Abs returns |n|.
func Abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
