package secrets

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/haven-platform/haven/internal/iam"
)

// CredentialsFile holds, sealed under the root key, the temporary
// credentials the region's issuer handed out (iam.Issuer.Snapshot), so a
// restarted daemon keeps accepting them until they expire.
const CredentialsFile = "credentials.sealed"

// credAAD binds the sealed credentials to their purpose.
var credAAD = []byte("haven-iam-credentials\x00v1")

// SaveCredentials seals creds under the root key of the secrets directory
// dir and writes them, replacing the file atomically (mode 0600).
func SaveCredentials(dir string, creds []iam.Credentials) error {
	root, err := loadOrCreateRootKey(filepath.Join(dir, RootKeyFile))
	if err != nil {
		return err
	}
	plain, err := json.Marshal(creds)
	if err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	defer clear(plain)
	box, err := gcmSeal(root, plain, credAAD)
	if err != nil {
		return fmt.Errorf("seal credentials: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, CredentialsFile), box, 0o600, nil); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	return nil
}

// LoadCredentials reads back what SaveCredentials wrote (none when there
// is no file).
func LoadCredentials(dir string) ([]iam.Credentials, error) {
	box, err := os.ReadFile(filepath.Join(dir, CredentialsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load credentials: %w", err)
	}
	root, err := loadOrCreateRootKey(filepath.Join(dir, RootKeyFile))
	if err != nil {
		return nil, err
	}
	plain, err := gcmOpen(root, box, credAAD)
	if err != nil {
		return nil, fmt.Errorf("open sealed credentials %s: %w", filepath.Join(dir, CredentialsFile), err)
	}
	defer clear(plain)
	var creds []iam.Credentials
	if err := json.Unmarshal(plain, &creds); err != nil {
		return nil, fmt.Errorf("load credentials: %w", err)
	}
	return creds, nil
}
