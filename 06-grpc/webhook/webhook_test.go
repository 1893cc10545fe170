package webhook_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/webhook"
)

// The test vector of the Standard Webhooks specification: any implementation
// that signs it differently cannot talk to the others.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSign_MatchesTheSpecificationsTestVector(t *testing.T) {
	secret, err := webhook.ParseSecret(vectorSecret)
	require.NoError(t, err)

	got := secret.Sign(vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))

	assert.Equal(t, vectorSignature, got)
}

func TestNewSecret_IsRandomAndParsesBack(t *testing.T) {
	a, b := webhook.NewSecret(), webhook.NewSecret()
	require.NotEqual(t, a.Encode(), b.Encode(), "two secrets")

	assert.Regexp(t, `^whsec_[A-Za-z0-9+/]{43}=$`, a.Encode(), "whsec_ and 32 bytes in base64")
	parsed, err := webhook.ParseSecret(a.Encode())
	require.NoError(t, err)
	assert.Equal(t, a.Encode(), parsed.Encode())
}

func TestParseSecret_RefusesWhatIsNotASecret(t *testing.T) {
	for _, s := range []string{"", "whsec_", "whsec_not base64!", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_AAAA"} {
		_, err := webhook.ParseSecret(s)
		assert.Error(t, err, "%q", s)
	}
}
