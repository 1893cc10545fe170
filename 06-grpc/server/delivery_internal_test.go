package server

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBackoff_IsFullJitterUnderADoublingCeiling(t *testing.T) {
	for _, tc := range []struct {
		policy   retryPolicy
		failures int
		ceiling  time.Duration
	}{
		{retryPolicy{base: time.Second, max: 8 * time.Second}, 1, time.Second},
		{retryPolicy{base: time.Second, max: 8 * time.Second}, 2, 2 * time.Second},
		{retryPolicy{base: time.Second, max: 8 * time.Second}, 3, 4 * time.Second},
		{retryPolicy{base: time.Second, max: 8 * time.Second}, 4, 8 * time.Second},
		{retryPolicy{base: time.Second, max: 8 * time.Second}, 9, 8 * time.Second},
		// base·2ⁿ⁻¹ past what a Duration holds: still the cap, never 0.
		{retryPolicy{base: time.Hour, max: 2 * time.Hour}, 40, 2 * time.Hour},
		{retryPolicy{base: time.Hour, max: 2 * time.Hour}, 64, 2 * time.Hour},
	} {
		var low, high bool
		for range 1000 {
			d := tc.policy.backoff(tc.failures)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.Less(t, d, tc.ceiling, "after %d failures", tc.failures)
			low = low || d < tc.ceiling/4
			high = high || d >= tc.ceiling*3/4
		}
		assert.True(t, low && high, "after %d failures, 1,000 waits spread over [0, %v)", tc.failures, tc.ceiling)
	}
}
