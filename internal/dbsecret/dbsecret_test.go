package dbsecret

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/failpoint"
	"github.com/haven-platform/haven/internal/secrets"
	"github.com/haven-platform/haven/internal/testkit"
)

// fakeDB is the database's side: role passwords, and who logs in.
type fakeDB struct {
	mu        sync.Mutex
	passwords map[string]string
	logins    []string
	// addr and dbname are where the database is ("": 127.0.0.1:6432, app).
	addr, dbname string
}

func (f *fakeDB) EnsureLoginRoles(_ context.Context, owner string, logins []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logins = append([]string{owner}, logins...)
	return nil
}

func (f *fakeDB) SetPassword(_ context.Context, role, pw string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.passwords[role] = pw
	return nil
}

func (f *fakeDB) testLogin(_ context.Context, addr, db, user, pw string) (bool, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if addr != cmp.Or(f.addr, "127.0.0.1:6432") || db != cmp.Or(f.dbname, "app") {
		return false, "", fmt.Errorf("wrong endpoint %s/%s", addr, db)
	}
	if f.passwords[user] != pw {
		return false, "28P01 password authentication failed", nil
	}
	return true, "", nil
}

func newCred(t *testing.T, fps *failpoint.Set) (*Credential, *fakeDB, *secrets.Driver) {
	t.Helper()
	st, err := secrets.OpenStore(secrets.StoreConfig{Dir: t.TempDir(), Region: "eu-west-1", Account: "123456789012",
		Clock: clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	db := &fakeDB{passwords: map[string]string{}}
	d := secrets.NewDriver(st)
	n := 0
	c := New(Config{Name: "app/db", Owner: "app", Database: "app", Endpoint: "127.0.0.1:6432", Store: st, Driver: d, Roles: db,
		TestLogin: db.testLogin, NewPassword: func() string { n++; return fmt.Sprintf("password-%02d-xxxxxxxxxxxxxxxxxxxx", n) },
		Failpoints: fps})
	return c, db, d
}

func TestBootstrapAndAlternatingRotation(t *testing.T) {
	c, db, d := newCred(t, nil)
	ctx := context.Background()
	created, err := c.Bootstrap(ctx)
	if err != nil || !created || c.ARN() == "" {
		t.Fatalf("bootstrap: created %v, arn %q, err %v", created, c.ARN(), err)
	}
	if strings.Join(db.logins, ",") != "app,app_a,app_b" || db.passwords["app_a"] == "" {
		t.Fatalf("roles %v passwords %v", db.logins, db.passwords)
	}
	var users []string
	for range 3 {
		if _, err := d.Rotate(ctx, "app/db"); err != nil {
			t.Fatal(err)
		}
		_, user, ok, reason, err := c.TestLogin(ctx, secrets.GetSecretValueInput{})
		if err != nil || !ok {
			t.Fatalf("AWSCURRENT does not log in: %v %s", err, reason)
		}
		users = append(users, user)
		_, prev, ok, _, err := c.TestLogin(ctx, secrets.GetSecretValueInput{VersionStage: secrets.StagePrevious})
		if err != nil || !ok || prev == user {
			t.Fatalf("AWSPREVIOUS (%s) does not log in or is the same user: %v", prev, err)
		}
	}
	if strings.Join(users, ",") != "app_b,app_a,app_b" {
		t.Errorf("rotations went to %v, want alternating app_b, app_a, app_b", users)
	}
	// A restart finds the secret and makes the database agree with it.
	db.passwords = map[string]string{}
	if created, err := c.Bootstrap(ctx); err != nil || created {
		t.Fatalf("second bootstrap: created %v, err %v", created, err)
	}
	if _, _, ok, _, _ := c.TestLogin(ctx, secrets.GetSecretValueInput{}); !ok {
		t.Error("AWSCURRENT does not log in after the database lost its passwords and a bootstrap")
	}
}

func TestInterruptedRotationResumes(t *testing.T) {
	fps := failpoint.NewSet()
	if err := fps.Arm(failpoint.SecretsCrashAfterSetSecret, failpoint.Error); err != nil {
		t.Fatal(err)
	}
	c, _, d := newCred(t, fps)
	ctx := context.Background()
	if _, err := c.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	before, _, _, _, _ := c.TestLogin(ctx, secrets.GetSecretValueInput{})
	if _, err := d.Rotate(ctx, "app/db"); !errors.Is(err, failpoint.ErrInjected) {
		t.Fatalf("rotation through the failpoint: err = %v, want ErrInjected", err)
	}
	if pending, err := c.Pending(); err != nil || !pending {
		t.Fatalf("pending after the interrupted rotation = %v, %v", pending, err)
	}
	fps.Disarm(failpoint.SecretsCrashAfterSetSecret)
	what, err := c.Resume(ctx)
	if err != nil || !strings.Contains(what, "finished") {
		t.Fatalf("resume = %q, %v", what, err)
	}
	after, user, ok, _, _ := c.TestLogin(ctx, secrets.GetSecretValueInput{})
	if after == before || !ok || user != "app_b" {
		t.Errorf("after resume AWSCURRENT %s (was %s) user %s logs in %v", after, before, user, ok)
	}
	if what, err := c.Resume(ctx); what != "" || err != nil {
		t.Errorf("a second resume did %q, %v", what, err)
	}
}

func TestParseNeverEchoesTheValue(t *testing.T) {
	if _, err := Parse(`not json with hunter2`); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Parse(`{"username":"a"}`); err == nil {
		t.Fatal("a secret without password parsed")
	}
}

// TestRestartFollowsEndpointAndDatabase is the stale-port bug: a region
// stopped, then brought up on another database.endpoint (and database
// name). Whatever the secret held, every version an app can read after the
// next bootstrap and resume names the new host, port and dbname, also when
// a rotation was pending from before the change (its AWSPENDING was
// written with the old port, and finishing it would have made the old
// port AWSCURRENT again).
func TestRestartFollowsEndpointAndDatabase(t *testing.T) {
	for _, pendingRotation := range []bool{false, true} {
		t.Run(fmt.Sprintf("pending=%v", pendingRotation), func(t *testing.T) {
			fps := failpoint.NewSet()
			c, db, d := newCred(t, fps)
			ctx := context.Background()
			if _, err := c.Bootstrap(ctx); err != nil {
				t.Fatal(err)
			}
			if pendingRotation {
				if err := fps.Arm(failpoint.SecretsCrashAfterSetSecret, failpoint.Error); err != nil {
					t.Fatal(err)
				}
				if _, err := d.Rotate(ctx, "app/db"); !errors.Is(err, failpoint.ErrInjected) {
					t.Fatalf("rotation through the failpoint: %v", err)
				}
				fps.Disarm(failpoint.SecretsCrashAfterSetSecret)
			}
			// The next up: the same store, another endpoint and database.
			cfg := c.cfg
			cfg.Endpoint, cfg.Database = "127.0.0.1:10432", "app2"
			db.mu.Lock()
			db.addr, db.dbname = cfg.Endpoint, cfg.Database
			db.mu.Unlock()
			c2 := New(cfg)
			if _, err := c2.Bootstrap(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := c2.Resume(ctx); err != nil {
				t.Fatal(err)
			}
			out, err := cfg.Store.ListSecretVersionIds(secrets.ListSecretVersionIdsInput{SecretId: "app/db"})
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range out.Versions {
				if !slices.Contains(v.VersionStages, secrets.StageCurrent) && !slices.Contains(v.VersionStages, secrets.StagePending) {
					continue
				}
				g, err := cfg.Store.GetSecretValue(secrets.GetSecretValueInput{SecretId: "app/db", VersionId: v.VersionId})
				if err != nil {
					t.Fatal(err)
				}
				val, err := Parse(*g.SecretString)
				if err != nil {
					t.Fatal(err)
				}
				if val.Port != 10432 || val.Host != "127.0.0.1" || val.DBName != "app2" {
					t.Errorf("version %v names %s:%d/%s, want 127.0.0.1:10432/app2", v.VersionStages, val.Host, val.Port, val.DBName)
				}
				if slices.Contains(v.VersionStages, secrets.StageCurrent) && db.passwords[val.Username] != val.Password {
					t.Errorf("AWSCURRENT's password for %s is not the database's", val.Username)
				}
			}
		})
	}
}

// TestSetEndpointMovesARunningSecret is an apply of database.endpoint on a
// running region: after SetEndpoint and Follow, AWSCURRENT names the new
// port with the same login, and the next rotation writes and tests its
// login at the new port (never the old one).
func TestSetEndpointMovesARunningSecret(t *testing.T) {
	c, db, d := newCred(t, nil)
	ctx := context.Background()
	if _, err := c.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	current := func() Value {
		t.Helper()
		g, err := c.cfg.Store.GetSecretValue(secrets.GetSecretValueInput{SecretId: "app/db"})
		if err != nil {
			t.Fatal(err)
		}
		v, err := Parse(*g.SecretString)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := current()
	if err := c.SetEndpoint("127.0.0.1:10432", ""); err == nil {
		t.Error("SetEndpoint with no database succeeded")
	}
	if err := c.SetEndpoint("nowhere", "app"); err == nil {
		t.Error("SetEndpoint of a bad address succeeded")
	}
	if err := c.SetEndpoint("127.0.0.1:10432", "app"); err != nil {
		t.Fatal(err)
	}
	db.mu.Lock()
	db.addr = "127.0.0.1:10432"
	db.mu.Unlock()
	if moved, err := c.Follow(ctx); err != nil || !moved {
		t.Fatalf("Follow: moved %v, %v; want moved", moved, err)
	}
	after := current()
	if after.Port != 10432 || after.Username != before.Username || after.Password != before.Password {
		t.Errorf("AWSCURRENT after the move: port %d, user %s (same password %v); want 10432, %s, same password",
			after.Port, after.Username, after.Password == before.Password, before.Username)
	}
	if moved, err := c.Follow(ctx); err != nil || moved {
		t.Errorf("a second Follow: moved %v, %v; want nothing to do", moved, err)
	}
	if _, err := d.Rotate(ctx, "app/db"); err != nil {
		t.Fatalf("rotation after the move (tests its login at the new port): %v", err)
	}
	if v := current(); v.Port != 10432 || v.Username == before.Username {
		t.Errorf("after the rotation: port %d, user %s; want 10432 and the other user", v.Port, v.Username)
	}
}
