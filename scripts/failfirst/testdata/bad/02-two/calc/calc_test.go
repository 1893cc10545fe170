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

// TestAbs is new, but only checks what chapter 01 already did right: it
// drives nothing, and failfirst must say so.
func TestAbs(t *testing.T) {
	if calc.Abs(4) != 4 {
		t.Fatalf("Abs(4) = %d, want 4", calc.Abs(4))
	}
}
