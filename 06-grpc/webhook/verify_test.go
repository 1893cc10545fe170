package webhook_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/webhook"
)

// signed returns the headers of a delivery of body signed with secret at ts.
func signed(secret webhook.Secret, id string, ts time.Time, body string) http.Header {
	h := http.Header{}
	h.Set(webhook.HeaderID, id)
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(webhook.HeaderSignature, secret.Sign(id, ts, []byte(body)))
	return h
}

func TestVerify_AcceptsTheTestVector(t *testing.T) {
	secret, err := webhook.ParseSecret(vectorSecret)
	require.NoError(t, err)
	sent := time.Unix(vectorTimestamp, 0)
	h := http.Header{}
	h.Set(webhook.HeaderID, vectorID)
	h.Set(webhook.HeaderTimestamp, strconv.Itoa(vectorTimestamp))
	h.Set(webhook.HeaderSignature, vectorSignature)

	assert.NoError(t, secret.Verify(h, []byte(vectorBody), sent.Add(time.Minute)))
}

func TestVerify_RefusesWhatWasNotSignedWithTheSecretOrIsOutOfTime(t *testing.T) {
	secret, other := webhook.NewSecret(), webhook.NewSecret()
	now := time.Unix(1_700_000_000, 0)
	body := `{"id":1,"data":"hi","time":"2023-11-14T22:13:20Z"}`
	cases := map[string]struct {
		header http.Header
		body   string
		want   error
	}{
		"another secret":        {signed(other, "msg_1", now, body), body, webhook.ErrSignature},
		"another body":          {signed(secret, "msg_1", now, body), body + " ", webhook.ErrSignature},
		"6 minutes old":         {signed(secret, "msg_1", now.Add(-6*time.Minute), body), body, webhook.ErrTimestamp},
		"6 minutes ahead":       {signed(secret, "msg_1", now.Add(6*time.Minute), body), body, webhook.ErrTimestamp},
		"no signature":          {without(signed(secret, "msg_1", now, body), webhook.HeaderSignature), body, webhook.ErrMissingHeader},
		"no id":                 {without(signed(secret, "msg_1", now, body), webhook.HeaderID), body, webhook.ErrMissingHeader},
		"no timestamp":          {without(signed(secret, "msg_1", now, body), webhook.HeaderTimestamp), body, webhook.ErrMissingHeader},
		"timestamp not a count": {with(signed(secret, "msg_1", now, body), webhook.HeaderTimestamp, "soon"), body, webhook.ErrTimestamp},
		"another id":            {with(signed(secret, "msg_1", now, body), webhook.HeaderID, "msg_2"), body, webhook.ErrSignature},
		"v2 scheme":             {with(signed(secret, "msg_1", now, body), webhook.HeaderSignature, "v2,"+secret.Sign("msg_1", now, []byte(body))[3:]), body, webhook.ErrSignature},
		"signature not base64":  {with(signed(secret, "msg_1", now, body), webhook.HeaderSignature, "v1,!!!"), body, webhook.ErrSignature},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			assert.ErrorIs(t, secret.Verify(c.header, []byte(c.body), now), c.want)
		})
	}
}

func TestVerify_AcceptsAnyOfSeveralSignatures(t *testing.T) {
	// A sender rotating its secret signs with the old and the new one,
	// separated by spaces; a receiver with either accepts.
	secret, old := webhook.NewSecret(), webhook.NewSecret()
	now := time.Unix(1_700_000_000, 0)
	h := signed(secret, "msg_1", now, "{}")
	h.Set(webhook.HeaderSignature, old.Sign("msg_1", now, []byte("{}"))+" v1a,ignored "+h.Get(webhook.HeaderSignature))

	assert.NoError(t, secret.Verify(h, []byte("{}"), now))
}

// The library of the Standard Webhooks project is written by others: what it
// signs, Verify accepts, and what Sign makes, it accepts.
func TestVerify_AgreesWithTheStandardWebhooksLibrary(t *testing.T) {
	secret := webhook.NewSecret()
	theirs, err := standardwebhooks.NewWebhook(secret.Encode())
	require.NoError(t, err)
	now := time.Now()
	body := []byte(`{"id":7,"data":"driver at 51.5074,-0.1278","time":"2026-11-25T19:03:11Z"}`)

	t.Run("they sign, we verify", func(t *testing.T) {
		signature, err := theirs.Sign("msg_theirs", now, body)
		require.NoError(t, err)
		h := http.Header{}
		h.Set(standardwebhooks.HeaderWebhookID, "msg_theirs")
		h.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
		h.Set(standardwebhooks.HeaderWebhookSignature, signature)
		assert.NoError(t, secret.Verify(h, body, now))
	})
	t.Run("we sign, they verify", func(t *testing.T) {
		assert.NoError(t, theirs.Verify(body, signed(secret, "msg_ours", now, string(body))))
	})
}

func without(h http.Header, name string) http.Header {
	h.Del(name)
	return h
}

func with(h http.Header, name, value string) http.Header {
	h.Set(name, value)
	return h
}
