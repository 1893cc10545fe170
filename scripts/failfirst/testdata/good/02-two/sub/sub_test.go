package sub_test

import (
	"testing"

	"fixture/02-two/sub"
)

// TestSub is new: chapter 01 has no package sub, so it fails there by not
// building.
func TestSub(t *testing.T) {
	if sub.Sub(5, 3) != 2 {
		t.Fatal("5-3 != 2")
	}
}
