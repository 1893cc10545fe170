package calc

// Sub returns a - b.
func Sub(a, b int) int {
	return Add(a, -b)
}
