package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/idp"
)

func newIdentityCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "identity", Short: "The region's OpenID provider (staff sign-in): status, signing key rotation, password hashes for the spec"}
	var statusJSON, rotateJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the provider's issuer, discovery URL, client registration and published signing keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if st.Identity == nil {
				return errors.New("identity: the region runs no identity provider: set identity.enabled: true in the spec and run `haven up` (docs/idp.md)")
			}
			if statusJSON {
				return writeJSON(cmd.OutOrStdout(), st.Identity)
			}
			fmt.Fprint(cmd.OutOrStdout(), identityStatus(st.Identity, true))
			return nil
		},
	}
	status.Flags().BoolVar(&statusJSON, "json", false, "print as JSON")
	rotate := &cobra.Command{
		Use:   "rotate-key",
		Short: "Sign with a new key at once; the old key stays in the JWKS for identity.key_retention, so every token it signed still verifies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := g.client().IdentityRotateKey(cmd.Context())
			if err != nil {
				return err
			}
			if rotateJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signing key %s replaces %s\n", out.Signing, out.Previous)
			fmt.Fprint(cmd.OutOrStdout(), identityStatus(&out.Identity, true))
			return nil
		},
	}
	rotate.Flags().BoolVar(&rotateJSON, "json", false, "print as JSON")
	hash := &cobra.Command{
		Use:   "hash",
		Short: "Read a password on stdin (one line) and print its argon2id hash for identity.users[].password_hash",
		Long: "Read a password on stdin (one line) and print its argon2id hash, for identity.users[].password_hash or\n" +
			"identity.generated[].password_hash. The password never goes in an argument, the spec or a log.\n\n" +
			"  read -rs PW && printf '%s\\n' \"$PW\" | haven identity hash",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readPassword(cmd.InOrStdin())
			if err != nil {
				return err
			}
			h, err := idp.HashSecret(pw)
			if err != nil {
				return fmt.Errorf("hash the password: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), h)
			return nil
		},
	}
	cmd.AddCommand(status, rotate, hash)
	return cmd
}

// readPassword reads one line of at most 1,024 bytes (the provider's bound).
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 1026)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the password on stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	switch {
	case pw == "":
		return "", errors.New("read the password on stdin: got nothing; pipe one line, e.g. printf '%s\\n' \"$PW\" | haven identity hash")
	case len(pw) > 1024:
		return "", errors.New("read the password on stdin: longer than 1,024 bytes, which the provider's login page refuses")
	}
	return pw, nil
}

// identityStatus renders the identity tier; keys lists every published key.
func identityStatus(id *api.Identity, keys bool) string {
	var b strings.Builder
	mode := "password or single sign-on for staff"
	if id.StaffSSOOnly {
		mode = "staff: single sign-on only"
	}
	rot := "by hand only"
	if id.KeyRotationS > 0 {
		rot = "every " + days(time.Duration(id.KeyRotationS)*time.Second)
	}
	groups := make([]string, 0, len(id.Groups))
	for _, g := range slices.Sorted(maps.Keys(id.Groups)) {
		groups = append(groups, fmt.Sprintf("%s %d", g, id.Groups[g]))
	}
	fmt.Fprintf(&b, "identity %s (discovery %s), %d users (%s); %s\n", id.Issuer, id.DiscoveryURL, id.Users, strings.Join(groups, ", "), mode)
	for _, c := range id.Clients {
		fmt.Fprintf(&b, "  client %s: redirect %s, post-logout %s, secret %s\n", c.ID, strings.Join(c.RedirectURIs, " "), strings.Join(c.PostLogoutRedirectURIs, " "), c.SecretID)
	}
	fmt.Fprintf(&b, "  signing key %s (rotation %s, retention %s; keys in secret %s)\n", id.SigningKey, rot,
		days(time.Duration(id.KeyRetentionS)*time.Second), id.SigningKeysSecret)
	if keys {
		for _, k := range id.Keys {
			state := "signing"
			if !k.Signing {
				state = "retired " + k.Retired.UTC().Format(time.RFC3339) + ", published until " + k.PublishedUntil.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(&b, "    %s %s created %s, %s\n", k.ID, k.Algorithm, k.Created.UTC().Format(time.RFC3339), state)
		}
	}
	return b.String()
}

// days writes a whole number of days as the spec does (90d), and any other
// duration as Go does.
func days(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
