package calc

// Abs is the distance from 0 to x.
func Abs(x int) int {
	return max(x, -x)
}
