package sandbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// A compiled artifact is native code: deserializing one is running it.
// So the compile cache keeps beside every artifact a digest record written
// by whoever produced the artifact (the runtime's own process, never a
// worker), and an artifact is deserialized only when its bytes match its
// record. A file dropped into the cache, truncated or swapped has no
// matching record and is compiled again.

// Digest is the sha256 of an artifact's bytes.
type Digest [sha256.Size]byte

// DigestOf returns the digest of b.
func DigestOf(b []byte) Digest { return sha256.Sum256(b) }

// ErrArtifactDigest says an artifact is missing or its bytes do not match
// the digest the runtime recorded when it produced them: compile again.
var ErrArtifactDigest = errors.New("compiled artifact does not match its recorded digest")

// MaxArtifactSize bounds a compiled artifact (a module is at most 64 MiB of
// wasm; Cranelift's output is a small multiple of it).
const MaxArtifactSize = 512 << 20

// artifactFormat is part of every artifact's cache key: a change in how
// artifacts are recorded or named never meets an older file.
const artifactFormat = "sluice-artifact-v3"

// Artifacts are the cache keys of a module's compiled artifact and of the
// host-call adapter's (adapter.go), chosen by the runtime from the module's
// bytes and memory limit, never by a worker. Under a key, the cache holds a
// digest record (KEY.sha256) and the artifact it names (KEY.DIGEST.bin):
// an artifact file never changes once written, so concurrent compiles of
// one module, in this process or another, cannot mix two artifacts' bytes
// and digests.
type Artifacts struct {
	Module  string
	Adapter string
}

// ArtifactPaths returns the cache keys in dir of the artifacts, by the
// tier that compiles them, of the module whose bytes have digest module
// under memLimit. The key names the module's bytes and limit rather than
// the capped bytes (which they determine, under one artifactFormat): a
// start with many functions hashes each module once.
func ArtifactPaths(dir string, module Digest, memLimit int64) TierArtifacts {
	var out TierArtifacts
	for _, t := range []Tier{TierOptimized, TierFast} {
		id := engineID(t)
		out[t] = Artifacts{Module: artifactPath(dir, id, module, memLimit), Adapter: adapterCachePath(dir, id)}
	}
	return out
}

// TierArtifacts are a module's cache keys, indexed by Tier.
type TierArtifacts [2]Artifacts

// ArtifactFile is the file of the artifact with digest sum under key.
func ArtifactFile(key string, sum Digest) string {
	return key + "." + hex.EncodeToString(sum[:]) + ".bin"
}

func recordPath(key string) string { return key + ".sha256" }

// StoreArtifact writes an artifact under key, then its digest record, each
// atomically, and returns the digest.
func StoreArtifact(key string, b []byte) (Digest, error) {
	sum := DigestOf(b)
	if err := writeAtomic(ArtifactFile(key, sum), b); err != nil {
		return sum, err
	}
	return sum, writeAtomic(recordPath(key), []byte(hex.EncodeToString(sum[:])+"\n"))
}

// RecordedDigest returns the digest recorded under key, and whether the
// record and the artifact it names are both there.
func RecordedDigest(key string) (Digest, bool) {
	var sum Digest
	b, err := readCapped(recordPath(key), int64(2*len(sum)+1))
	if err != nil {
		return sum, false
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != len(sum) {
		return sum, false
	}
	copy(sum[:], raw)
	if _, err := os.Stat(ArtifactFile(key, sum)); err != nil {
		return sum, false
	}
	return sum, true
}

// ReadArtifact reads the artifact with digest want under key and checks
// its bytes against want.
func ReadArtifact(key string, want Digest) ([]byte, error) {
	path := ArtifactFile(key, want)
	b, err := readCapped(path, MaxArtifactSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrArtifactDigest, err)
	}
	if got := DigestOf(b); !bytes.Equal(got[:], want[:]) {
		return nil, fmt.Errorf("%w: %s", ErrArtifactDigest, path)
	}
	return b, nil
}

// ErrNotRegular and ErrTooBig describe files refused by ReadFileCapped.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooBig     = errors.New("file too large")
)

// ReadFileCapped reads a regular file of at most limit bytes. Devices,
// FIFOs and directories are refused before any read, so a path such as
// /dev/zero is an error, not an endless read.
func ReadFileCapped(path string, limit int64) ([]byte, error) { return readCapped(path, limit) }

func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, info.Mode().Type())
	}
	if info.Size() > limit {
		return nil, fmt.Errorf("%s: %w: %d bytes, the limit is %d", path, ErrTooBig, info.Size(), limit)
	}
	// One buffer of the size stat gave, and one byte more to see a file
	// that grew since: growing a buffer as io.ReadAll does copied and
	// cleared about three times the file (a 15 MB artifact per worker
	// start, a module per function at load).
	b := make([]byte, info.Size()+1)
	n, err := io.ReadFull(io.LimitReader(f, limit+1), b)
	switch {
	case err == nil:
		// The file grew: read the rest, up to one byte past the limit.
		rest, err := io.ReadAll(io.LimitReader(f, limit+1-int64(n)))
		if err != nil {
			return nil, err
		}
		b = append(b[:n], rest...)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		b = b[:n]
	default:
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: over %d bytes", path, ErrTooBig, limit)
	}
	return b, nil
}

// readArtifactMapped reads the artifact recorded under key, as
// ReadArtifact does, into memory mapped outside the Go heap: free returns
// it to the system at once, where a Go buffer would wait for a collection
// that an idle worker never runs.
func readArtifactMapped(key string, want Digest) (b []byte, free func(), err error) {
	path := ArtifactFile(key, want)
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrArtifactDigest, err)
	}
	defer f.Close()
	info, err := f.Stat()
	switch {
	case err != nil:
		return nil, nil, fmt.Errorf("%w: %w", ErrArtifactDigest, err)
	case !info.Mode().IsRegular() || info.Size() == 0 || info.Size() > MaxArtifactSize:
		return nil, nil, fmt.Errorf("%w: %s: not a regular file of 1 to %d bytes", ErrArtifactDigest, path, int64(MaxArtifactSize))
	}
	b, err = syscall.Mmap(-1, 0, int(info.Size()), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil, nil, fmt.Errorf("artifact %s: map: %w", path, err)
	}
	free = func() { _ = syscall.Munmap(b) }
	// The bytes read are the ones checked: a file that changes meanwhile
	// fails the digest.
	if _, err := io.ReadFull(f, b); err != nil {
		free()
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrArtifactDigest, path, err)
	}
	if got := DigestOf(b); !bytes.Equal(got[:], want[:]) {
		free()
		return nil, nil, fmt.Errorf("%w: %s", ErrArtifactDigest, path)
	}
	return b, free, nil
}
