package calc

import "testing"

func TestAbs(t *testing.T) {
	for _, x := range []int{2} {
		if got := Abs(x); got != 2 {
			t.Errorf("Abs(%d) = %d, want 2", x, got)
		}
	}
}
