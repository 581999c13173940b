package idp

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// The argon2id parameters HashSecret uses: OWASP's first recommended
// configuration (19 MiB of memory, two passes, one lane).
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonSaltLen   = 16
	argonKeyLen    = 32
)

// Bounds on the argon2id parameters a configured hash may carry, so a hash in
// the configuration cannot make one sign-in cost gigabytes or minutes.
const (
	maxArgonMemoryKiB = 256 * 1024
	maxArgonTime      = 10
	maxArgonThreads   = 16
)

// ErrBadHash is returned for a password or client-secret hash that is
// neither argon2id (PHC string format) nor bcrypt.
var ErrBadHash = errors.New("not an argon2id or bcrypt hash")

// HashSecret hashes a user's password or a client's secret with argon2id and
// returns the PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash) that
// Config.Users and Config.Clients take. The secret itself is never kept.
func HashSecret(secret string) (string, error) {
	if secret == "" {
		return "", errors.New("hash secret: empty secret")
	}
	salt := make([]byte, argonSaltLen)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails (Go 1.24+).
	key := argon2.IDKey([]byte(secret), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemoryKiB, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// secretHash is a parsed hash, ready to compare against.
type secretHash struct {
	bcrypt []byte // set for bcrypt hashes

	// argon2id
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// parseHash parses an argon2id PHC string or a bcrypt hash ($2a$, $2b$,
// $2y$). It never includes the hash in its error.
func parseHash(s string) (secretHash, error) {
	switch {
	case strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return secretHash{}, fmt.Errorf("%w: malformed bcrypt hash", ErrBadHash)
		}
		return secretHash{bcrypt: []byte(s)}, nil
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	}
	return secretHash{}, ErrBadHash
}

func parseArgon2id(s string) (secretHash, error) {
	bad := func(what string) (secretHash, error) {
		return secretHash{}, fmt.Errorf("%w: argon2id hash: %s", ErrBadHash, what)
	}
	parts := strings.Split(s, "$") // "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 {
		return bad("want $argon2id$v=19$m=M,t=T,p=P$salt$hash")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad("unsupported version " + parts[2])
	}
	var h secretHash
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil {
			return bad("parameters must be m=M,t=T,p=P")
		}
		switch k {
		case "m":
			h.memory = uint32(n)
		case "t":
			h.time = uint32(n)
		case "p":
			if n > 255 {
				return bad("p out of range")
			}
			h.threads = uint8(n)
		default:
			return bad("unknown parameter " + k)
		}
	}
	if h.memory < 8 || h.memory > maxArgonMemoryKiB || h.time < 1 || h.time > maxArgonTime || h.threads < 1 || h.threads > maxArgonThreads {
		return bad(fmt.Sprintf("parameters out of bounds (m 8-%d, t 1-%d, p 1-%d)", maxArgonMemoryKiB, maxArgonTime, maxArgonThreads))
	}
	var err error
	if h.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
		return bad("salt must be at least 8 bytes of unpadded base64")
	}
	if h.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 64 {
		return bad("hash must be 16-64 bytes of unpadded base64")
	}
	return h, nil
}

// matches reports whether secret hashes to h, in constant time for argon2id
// (bcrypt's comparison is constant-time too).
func (h secretHash) matches(secret string) bool {
	if h.bcrypt != nil {
		// bcrypt reads at most 72 bytes; longer secrets would match on a prefix.
		return len(secret) <= 72 && bcrypt.CompareHashAndPassword(h.bcrypt, []byte(secret)) == nil
	}
	got := argon2.IDKey([]byte(secret), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(got, h.key) == 1
}

// dummyHash is compared against when a username or client id is unknown, so
// that an unknown name costs as much as a wrong secret and timing tells
// nothing.
var dummyHash = func() secretHash {
	s, err := HashSecret("not-a-real-secret")
	if err != nil {
		panic(err)
	}
	h, err := parseHash(s)
	if err != nil {
		panic(err)
	}
	return h
}()
