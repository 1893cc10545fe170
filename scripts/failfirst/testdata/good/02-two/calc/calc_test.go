package calc_test

import (
	"testing"

	"fixture/02-two/calc"
)

func TestAdd(t *testing.T) {
	if calc.Add(2, 3) != 5 {
		t.Fatal("2+3 != 5")
	}
}

// TestAbs is new: chapter 01's Abs is wrong, so it fails there by assertion.
func TestAbs(t *testing.T) {
	if calc.Abs(-4) != 4 {
		t.Fatalf("Abs(-4) = %d, want 4", calc.Abs(-4))
	}
}
