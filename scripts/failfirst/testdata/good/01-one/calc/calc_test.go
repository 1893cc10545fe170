package calc_test

import (
	"testing"

	"fixture/01-one/calc"
)

func TestAdd(t *testing.T) {
	if calc.Add(2, 3) != 5 {
		t.Fatal("2+3 != 5")
	}
}
