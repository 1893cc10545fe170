// Package calc is a fixture: chapter 01 of a two-chapter tutorial.
package calc

// Add returns a+b.
func Add(a, b int) int { return a + b }

// Abs returns |n|; this chapter forgets negative numbers.
func Abs(n int) int { return n }
