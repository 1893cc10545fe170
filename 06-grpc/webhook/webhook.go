// Package webhook signs and verifies webhook deliveries as the Standard
// Webhooks specification (https://www.standardwebhooks.com) says, so that a
// receiver written with any library of that specification can check ours,
// and ours can check theirs. The server signs with it; the client verifies.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// secretPrefix marks a secret as one, so that it is not mistaken for
// something else in a configuration file or a log line.
const secretPrefix = "whsec_"

// Key sizes. The specification asks for between 24 and 64 random bytes; a
// key shorter than SHA-256's own 32 bytes buys nothing, and the vector's is 24.
const (
	secretBytes    = 32 // what NewSecret makes
	minSecretBytes = 24 // the least ParseSecret accepts
	maxSecretBytes = 64
)

// Secret is the key one subscription's deliveries are signed with, shared by
// the sender and the receiver, and no one else.
type Secret struct {
	key []byte
}

// NewSecret returns a secret of 32 random bytes.
func NewSecret() Secret {
	key := make([]byte, secretBytes)
	_, _ = rand.Read(key) // never fails (crypto/rand)
	return Secret{key: key}
}

// ParseSecret reads a secret written as Encode writes it: "whsec_" and the
// key in base64.
func ParseSecret(s string) (Secret, error) {
	encoded, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return Secret{}, errors.New("a webhook secret starts with " + secretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return Secret{}, fmt.Errorf("a webhook secret is %s and base64: %w", secretPrefix, err)
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return Secret{}, fmt.Errorf("a webhook secret holds %d to %d bytes, not %d", minSecretBytes, maxSecretBytes, len(key))
	}
	return Secret{key: key}, nil
}

// Encode writes the secret as it is handed to a receiver: "whsec_" and the
// key in base64. It is the one place the key leaves the process.
func (s Secret) Encode() string {
	return secretPrefix + base64.StdEncoding.EncodeToString(s.key)
}

// Sign returns the webhook-signature header value for one delivery: "v1,"
// and the base64 HMAC-SHA256 of "ID.TIMESTAMP.BODY". The id and timestamp are
// signed with the body, so that neither can be changed or reused apart from it.
func (s Secret) Sign(id string, timestamp time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(s.mac(id, timestamp.Unix(), body))
}

func (s Secret) mac(id string, unix int64, body []byte) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(nil, unix, 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// The headers a delivery carries, as the specification names them.
const (
	HeaderID        = "webhook-id"        // the same on every retry of one message: receivers deduplicate on it
	HeaderTimestamp = "webhook-timestamp" // when this attempt was signed, in Unix seconds
	HeaderSignature = "webhook-signature" // "v1,BASE64", several separated by spaces while a secret is rotated
)

// Tolerance is how far a delivery's timestamp may be from the receiver's
// clock. A captured delivery replayed later than this is refused whatever
// its signature; within it, the receiver's memory of ids refuses it.
const Tolerance = 5 * time.Minute

// Reasons Verify refuses a delivery.
var (
	ErrMissingHeader = errors.New("missing webhook header")
	ErrTimestamp     = errors.New("webhook timestamp is not within 5 minutes of now")
	ErrSignature     = errors.New("no webhook signature matches")
)

// Verify checks that a delivery with header h and the raw body was signed
// with this secret, at a time within Tolerance of now. The body must be the
// bytes as received: parsing and re-encoding JSON changes them.
func (s Secret) Verify(h http.Header, body []byte, now time.Time) error {
	id, timestamp, signatures := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || timestamp == "" || signatures == "" {
		return fmt.Errorf("%w: want %s, %s and %s", ErrMissingHeader, HeaderID, HeaderTimestamp, HeaderSignature)
	}
	unix, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not a count of seconds", ErrTimestamp, timestamp)
	}
	if d := now.Sub(time.Unix(unix, 0)); d > Tolerance || d < -Tolerance {
		return fmt.Errorf("%w: it is %v away", ErrTimestamp, d.Round(time.Second))
	}
	want := s.mac(id, unix, body)
	for signature := range strings.FieldsSeq(signatures) {
		encoded, ok := strings.CutPrefix(signature, "v1,")
		if !ok {
			continue // another scheme, for a receiver that knows it
		}
		got, err := base64.StdEncoding.DecodeString(encoded)
		// hmac.Equal takes as long whatever the bytes, so that the time of a
		// refusal does not tell a forger how much of a guess was right.
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrSignature
}
