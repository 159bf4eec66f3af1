package functions

import (
	"encoding/hex"
	"time"
)

// SetStampSettle sets how old a module file's times must be before its
// stamp is recorded, and returns the restore.
func SetStampSettle(d time.Duration) (restore func()) {
	old := stampSettle
	stampSettle = d
	return func() { stampSettle = old }
}

// RecalledVersion is the version recorded with the current stamp of the
// module file at path, if any.
func RecalledVersion(cacheDir, path string) (string, bool) {
	sum, ok := recalledVersion(cacheDir, path)
	return hex.EncodeToString(sum[:]), ok
}

// StampOf returns the size, modification and change times of the file at
// path.
func StampOf(path string) (size, mtime, ctime int64, ok bool) {
	st, ok := stampOf(path)
	return st.size, st.mtime, st.ctime, ok
}
