package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// DefaultStaticPrefix is where static files go in the bucket: the edge
// serves /static/* from it.
const DefaultStaticPrefix = "static/"

// newReleaseCmd is the release task: what a deploy pipeline runs once per
// release, before (migrations, seed) and after (the materials' move) the
// instances change.
func newReleaseCmd(stdout, stderr io.Writer) *cobra.Command {
	var seedCfg SeedConfig
	var noSeed bool
	var staticPrefix string
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Run a release: migrations, seed data, materials out of the database, static files to the bucket",
		Long: `Run what a release needs, in order:
  1. apply pending migrations;
  2. seed demo data (unless --no-seed; nothing if already seeded);
  3. with S3_BUCKET: move material bytes still in the database to the bucket;
  4. with S3_BUCKET: upload the static files the bucket lacks, by content hash,
     under --static-prefix (what aws s3 sync of "courses static export" does).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !noSeed {
				if err := seedCfg.Validate(); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			log := newLogger(stderr)
			db, err := openFromEnv(ctx, "", 4, 8*time.Second, log)
			if err != nil {
				return err
			}
			defer db.Close()
			applied, err := Migrate(ctx, db, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "applied %d migration(s); schema at version %d\n", len(applied), migrations[len(migrations)-1].version)
			if !noSeed {
				if err := runSeed(ctx, db, seedCfg, stdout, stderr); err != nil {
					return err
				}
			}
			mc, err := materialsConfigFromEnv()
			if err != nil {
				return err
			}
			m, err := NewMaterials(ctx, mc, log)
			if err != nil {
				return err
			}
			if m == nil {
				fmt.Fprintln(stdout, "S3_BUCKET is not set: materials stay in the database and the app serves static files")
				return nil
			}
			return publishRelease(ctx, db, m, staticPrefix, stdout)
		},
	}
	addSeedFlags(cmd, &seedCfg)
	cmd.Flags().BoolVar(&noSeed, "no-seed", false, "do not seed demo data")
	cmd.Flags().StringVar(&staticPrefix, "static-prefix", DefaultStaticPrefix, "key prefix of static files in the bucket")
	return cmd
}

// publishRelease moves the materials out of the database and uploads the
// static files.
func publishRelease(ctx context.Context, db *DB, m *Materials, staticPrefix string, stdout io.Writer) error {
	start := time.Now()
	mv, err := MoveMaterials(ctx, db, m, 100)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "moved %d materials (%d bytes) from the database to s3://%s/%s in %s\n", mv.Moved, mv.Bytes, m.cfg.Bucket, m.cfg.Prefix, time.Since(start).Round(time.Millisecond))
	a, err := appAssets()
	if err != nil {
		return err
	}
	pub, err := publishAssets(ctx, a, m.s3, m.cfg.Bucket, staticPrefix)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "static files: %d uploaded, %d already in s3://%s/%s\n", len(pub.Uploaded), len(pub.Unchanged), m.cfg.Bucket, staticPrefix)
	for _, k := range pub.Uploaded {
		fmt.Fprintf(stdout, "  upload: %s\n", k)
	}
	return nil
}

// appAssets are the app's embedded static files, content-hashed.
func appAssets() (*assets, error) {
	sub, err := fs.Sub(staticFS, "web/static")
	if err != nil {
		return nil, err
	}
	return loadAssets(sub)
}

// newStaticCmd exports the static files for a pipeline's `aws s3 sync`.
func newStaticCmd(stdout, _ io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "static", Short: "The app's static files, named by content hash"}
	cmd.AddCommand(&cobra.Command{
		Use:   "export DIR",
		Short: "Write the hashed static files into DIR, for aws s3 sync DIR s3://BUCKET/static/",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := appAssets()
			if err != nil {
				return err
			}
			names, err := exportAssets(a, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "wrote %d files to %s: %s\n", len(names), args[0], strings.Join(names, ", "))
			fmt.Fprintf(stdout, "upload with: aws s3 sync %s s3://BUCKET/%s --cache-control %q\n", args[0], DefaultStaticPrefix, immutableCacheControl)
			return nil
		},
	})
	return cmd
}

// newMaterialsCmd moves material bytes out of the database on its own.
func newMaterialsCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "materials", Short: "Course materials in the bucket"}
	cmd.AddCommand(&cobra.Command{
		Use:   "move",
		Short: "Move material bytes still in the database to S3_BUCKET (run once every instance reads object_key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := newLogger(stderr)
			db, err := openFromEnv(ctx, "", 4, 8*time.Second, log)
			if err != nil {
				return err
			}
			defer db.Close()
			mc, err := materialsConfigFromEnv()
			if err != nil {
				return err
			}
			m, err := NewMaterials(ctx, mc, log)
			if err != nil {
				return err
			}
			if m == nil {
				return errNoBucket
			}
			mv, err := MoveMaterials(ctx, db, m, 100)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "moved %d materials (%d bytes) to s3://%s/%s\n", mv.Moved, mv.Bytes, m.cfg.Bucket, m.cfg.Prefix)
			return nil
		},
	})
	return cmd
}
