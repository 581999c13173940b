// Package objstore runs haven's S3-compatible object store as its own process: versitygw's gateway and posix backend, authorised by haven's IAM.
package objstore
