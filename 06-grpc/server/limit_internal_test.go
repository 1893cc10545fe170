package server

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestDefaultMaxHeld_LeavesAQuarterOfTheOpenFileLimitUnheld(t *testing.T) {
	tests := []struct {
		name  string
		files uint64
		want  int
	}{
		{"a common hard limit", 1 << 20, 3 << 18},
		{"this project's load test machine", 20000, 15000},
		{"the usual soft limit", 1024, 768},
		{"a small limit keeps at least 64 spare", 100, 36},
		{"a tiny limit still holds one", 10, 1},
		{"no limit at all", math.MaxUint64, math.MaxInt32 - math.MaxInt32/4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, maxHeldFor(tt.files))
		})
	}
}
