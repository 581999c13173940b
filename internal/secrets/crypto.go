package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// rootKeySize is the size of the region root key and of every data key (AES-256).
const rootKeySize = 32

// loadOrCreateRootKey reads the region root key (the local stand-in for a KMS key)
// from path, creating it with mode 0600 when absent. An existing key file must be a
// regular file owned by the current user, with no group or other permission bits.
func loadOrCreateRootKey(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return createRootKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("open root key %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat root key %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("load root key %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("load root key %s: permissions %#o are too open: run chmod 600 %s", path, perm, path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("load root key %s: owned by uid %d, not by the current user %d", path, sys.Uid, os.Geteuid())
	}
	key := make([]byte, rootKeySize+1)
	n, err := io.ReadFull(f, key)
	if n != rootKeySize || !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("load root key %s: must hold exactly %d bytes", path, rootKeySize)
	}
	return key[:rootKeySize], nil
}

func createRootKey(path string) ([]byte, error) {
	key := make([]byte, rootKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("create root key: %w", err)
	}
	// Write to a temp file and link it into place so a crash never leaves a short key.
	if err := writeFileAtomic(path, key, 0o600, nil); err != nil {
		return nil, fmt.Errorf("create root key: %w", err)
	}
	return key, nil
}

// sealed is one encrypted secret value: the value under a fresh data key, and the
// data key wrapped by the root key. Both are bound to the secret ARN and version id.
type sealed struct {
	// Binary is true when the value is SecretBinary rather than SecretString.
	Binary bool `json:"binary,omitempty"`
	// WrappedKey is nonce || AES-256-GCM(root key, data key).
	WrappedKey []byte `json:"wrappedKey"`
	// Ciphertext is nonce || AES-256-GCM(data key, value).
	Ciphertext []byte `json:"ciphertext"`
}

func aad(arn, versionID string, binary bool) []byte {
	kind := "string"
	if binary {
		kind = "binary"
	}
	return []byte("haven-secret\x00" + arn + "\x00" + versionID + "\x00" + kind)
}

func gcmSeal(key, plaintext, ad []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize(), g.NonceSize()+len(plaintext)+g.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return g.Seal(nonce, nonce, plaintext, ad), nil
}

func gcmOpen(key, box, ad []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(box) < g.NonceSize()+g.Overhead() {
		return nil, errors.New("ciphertext too short")
	}
	return g.Open(nil, box[:g.NonceSize()], box[g.NonceSize():], ad)
}

// seal encrypts value under a new data key wrapped by root.
func seal(root []byte, arn, versionID string, value []byte, binary bool) (sealed, error) {
	dk := make([]byte, rootKeySize)
	defer clear(dk)
	if _, err := rand.Read(dk); err != nil {
		return sealed{}, fmt.Errorf("seal secret value: %w", err)
	}
	ad := aad(arn, versionID, binary)
	ct, err := gcmSeal(dk, value, ad)
	if err != nil {
		return sealed{}, fmt.Errorf("seal secret value: %w", err)
	}
	wk, err := gcmSeal(root, dk, ad)
	if err != nil {
		return sealed{}, fmt.Errorf("wrap data key: %w", err)
	}
	return sealed{Binary: binary, WrappedKey: wk, Ciphertext: ct}, nil
}

// open decrypts a sealed value.
func open(root []byte, arn, versionID string, s sealed) ([]byte, error) {
	ad := aad(arn, versionID, s.Binary)
	dk, err := gcmOpen(root, s.WrappedKey, ad)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	defer clear(dk)
	v, err := gcmOpen(dk, s.Ciphertext, ad)
	if err != nil {
		return nil, fmt.Errorf("decrypt secret value: %w", err)
	}
	return v, nil
}
