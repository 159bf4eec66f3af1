package sandbox

import (
	"encoding/binary"

	"github.com/wasmerio/wasmer-go/wasmer"
)

// wasmer's WASI keeps the worker process's real descriptors behind fds 0-2
// and implements every descriptor call on them. The sandbox gives the guest
// no descriptor at all: it implements every WASI call that takes one,
// itself, so none reaches wasmer's descriptor table. Stdin reads as empty,
// stdout and stderr become bounded log lines (fdWrite), their metadata is
// that of a character device, and anything else fails with the errno a
// POSIX system gives for that call on a terminal or an unopened descriptor.
// wasmer still implements what takes no descriptor: args, environ, clocks,
// random_get, sched_yield.

// WASI errno values.
const (
	errnoSuccess    = 0
	errnoBadf       = 8
	errnoFault      = 21
	errnoInval      = 28
	errnoNosys      = 52
	errnoNotdir     = 54
	errnoNotsock    = 57
	errnoNotsup     = 58
	errnoSpipe      = 70
	errnoNotcapable = 76
)

// WASI rights and file types used in the stdio metadata.
const (
	rightFdRead          = 1 << 1
	rightFdWrite         = 1 << 6
	rightPollFdReadwrite = 1 << 27
	filetypeCharDevice   = 2
)

var (
	i32 = wasmer.I32
	i64 = wasmer.I64
)

// wasiSandboxed lists the WASI functions the sandbox implements, with their
// parameters (every one returns an errno, i32). proc_exit, which does not
// return, is registered on its own (instance.go).
var wasiSandboxed = map[string][]wasmer.ValueKind{
	"fd_write":    {i32, i32, i32, i32},
	"poll_oneoff": {i32, i32, i32, i32},

	"fd_read":               {i32, i32, i32, i32},
	"fd_pread":              {i32, i32, i32, i64, i32},
	"fd_pwrite":             {i32, i32, i32, i64, i32},
	"fd_seek":               {i32, i64, i32, i32},
	"fd_tell":               {i32, i32},
	"fd_advise":             {i32, i64, i64, i32},
	"fd_allocate":           {i32, i64, i64},
	"fd_close":              {i32},
	"fd_datasync":           {i32},
	"fd_sync":               {i32},
	"fd_renumber":           {i32, i32},
	"fd_fdstat_get":         {i32, i32},
	"fd_fdstat_set_flags":   {i32, i32},
	"fd_fdstat_set_rights":  {i32, i64, i64},
	"fd_filestat_get":       {i32, i32},
	"fd_filestat_set_size":  {i32, i64},
	"fd_filestat_set_times": {i32, i64, i64, i32},
	"fd_prestat_get":        {i32, i32},
	"fd_prestat_dir_name":   {i32, i32, i32},
	"fd_readdir":            {i32, i32, i32, i64, i32},

	"path_create_directory":   {i32, i32, i32},
	"path_filestat_get":       {i32, i32, i32, i32, i32},
	"path_filestat_set_times": {i32, i32, i32, i32, i64, i64, i32},
	"path_link":               {i32, i32, i32, i32, i32, i32, i32},
	"path_open":               {i32, i32, i32, i32, i32, i64, i64, i32, i32},
	"path_readlink":           {i32, i32, i32, i32, i32, i32},
	"path_remove_directory":   {i32, i32, i32},
	"path_rename":             {i32, i32, i32, i32, i32, i32},
	"path_symlink":            {i32, i32, i32, i32, i32},
	"path_unlink_file":        {i32, i32, i32},

	"sock_accept":   {i32, i32, i32},
	"sock_recv":     {i32, i32, i32, i32, i32, i32},
	"sock_send":     {i32, i32, i32, i32, i32},
	"sock_shutdown": {i32, i32},
	"proc_raise":    {i32},
}

// wasiHandlers implements wasiSandboxed.
func (in *Instance) wasiHandlers() map[string]func([]wasmer.Value) int32 {
	// onStdio answers a call on descriptor argument fdArg: stdio gets
	// errno, any other descriptor does not exist.
	onStdio := func(fdArg int, errno int32) func([]wasmer.Value) int32 {
		return func(args []wasmer.Value) int32 {
			if isStdio(args[fdArg].I32()) {
				return errno
			}
			return errnoBadf
		}
	}
	return map[string]func([]wasmer.Value) int32{
		"fd_write":    in.fdWrite,
		"poll_oneoff": in.pollOneoff,

		"fd_read":               in.fdRead,
		"fd_pread":              onStdio(0, errnoSpipe),
		"fd_pwrite":             onStdio(0, errnoSpipe),
		"fd_seek":               onStdio(0, errnoSpipe),
		"fd_tell":               onStdio(0, errnoSpipe),
		"fd_advise":             onStdio(0, errnoSpipe),
		"fd_allocate":           onStdio(0, errnoSpipe),
		"fd_close":              onStdio(0, errnoSuccess), // stdio stays as it is
		"fd_datasync":           onStdio(0, errnoInval),
		"fd_sync":               onStdio(0, errnoInval),
		"fd_renumber":           in.fdRenumber,
		"fd_fdstat_get":         in.fdFdstatGet,
		"fd_fdstat_set_flags":   onStdio(0, errnoSuccess), // the flags change nothing here
		"fd_fdstat_set_rights":  onStdio(0, errnoNotcapable),
		"fd_filestat_get":       in.fdFilestatGet,
		"fd_filestat_set_size":  onStdio(0, errnoInval),
		"fd_filestat_set_times": onStdio(0, errnoInval),
		"fd_prestat_get":        onStdio(0, errnoBadf), // no preopened directory
		"fd_prestat_dir_name":   onStdio(0, errnoBadf),
		"fd_readdir":            onStdio(0, errnoNotdir),

		"path_create_directory":   onStdio(0, errnoNotdir),
		"path_filestat_get":       onStdio(0, errnoNotdir),
		"path_filestat_set_times": onStdio(0, errnoNotdir),
		"path_link":               onStdio(0, errnoNotdir),
		"path_open":               onStdio(0, errnoNotdir),
		"path_readlink":           onStdio(0, errnoNotdir),
		"path_remove_directory":   onStdio(0, errnoNotdir),
		"path_rename":             onStdio(0, errnoNotdir),
		"path_symlink":            onStdio(2, errnoNotdir),
		"path_unlink_file":        onStdio(0, errnoNotdir),

		"sock_accept":   onStdio(0, errnoNotsock),
		"sock_recv":     onStdio(0, errnoNotsock),
		"sock_send":     onStdio(0, errnoNotsock),
		"sock_shutdown": onStdio(0, errnoNotsock),
		"proc_raise":    func([]wasmer.Value) int32 { return errnoNosys },
	}
}

func isStdio(fd int32) bool { return fd >= 0 && fd <= 2 }

// fdRead reads stdin, which is empty: every read is at its end.
func (in *Instance) fdRead(args []wasmer.Value) int32 {
	if args[0].I32() != 0 {
		return errnoBadf // stdout and stderr are not readable; nothing else exists
	}
	nread, ok := in.guest(args[3].I32(), 4)
	if !ok {
		return errnoFault
	}
	binary.LittleEndian.PutUint32(nread, 0)
	return errnoSuccess
}

// fdRenumber refuses: stdio cannot be replaced and nothing else exists.
func (in *Instance) fdRenumber(args []wasmer.Value) int32 {
	if isStdio(args[0].I32()) && isStdio(args[1].I32()) {
		return errnoNotsup
	}
	return errnoBadf
}

// fdFdstatGet describes stdio as character devices: stdin readable, stdout
// and stderr writable, all blocking.
func (in *Instance) fdFdstatGet(args []wasmer.Value) int32 {
	fd := args[0].I32()
	if !isStdio(fd) {
		return errnoBadf
	}
	buf, ok := in.guest(args[1].I32(), 24)
	if !ok {
		return errnoFault
	}
	clear(buf)
	buf[0] = filetypeCharDevice
	rights := uint64(rightFdWrite | rightPollFdReadwrite)
	if fd == 0 {
		rights = rightFdRead | rightPollFdReadwrite
	}
	binary.LittleEndian.PutUint64(buf[8:], rights)
	return errnoSuccess
}

// fdFilestatGet describes stdio as character devices of size 0.
func (in *Instance) fdFilestatGet(args []wasmer.Value) int32 {
	if !isStdio(args[0].I32()) {
		return errnoBadf
	}
	buf, ok := in.guest(args[1].I32(), 64)
	if !ok {
		return errnoFault
	}
	clear(buf)
	buf[16] = filetypeCharDevice
	binary.LittleEndian.PutUint64(buf[24:], 1) // nlink
	return errnoSuccess
}
