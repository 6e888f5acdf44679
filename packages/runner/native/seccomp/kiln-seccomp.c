/*
 * kiln-seccomp: writes the sandbox's seccomp deny-list as a raw BPF program, the format
 * `bwrap --seccomp FD` reads. The runner runs it once per variant and caches the output.
 *
 *   kiln-seccomp [--allow-network] OUTPUT_PATH
 *
 * Policy: everything is allowed except the calls below, which fail with EPERM (or EAFNOSUPPORT for
 * sockets, ENOSYS for clone3 so libc falls back to clone, whose flags we can inspect). Other
 * architectures (i386, x32 entry points) are killed outright by libseccomp's bad-arch action.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const DENIED[] = {
    /* namespaces: nested user namespaces are the root of many kernel escapes */
    "unshare", "setns",
    /* mounts, old and new API */
    "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    /* other processes' memory */
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    /* kernel keyrings */
    "keyctl", "add_key", "request_key",
    /* large kernel attack surfaces */
    "bpf", "io_uring_setup", "io_uring_enter", "io_uring_register", "perf_event_open", "userfaultfd",
    "fanotify_init",
    /* the machine itself */
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "swapon",
    "swapoff", "reboot", "acct", "quotactl", "quotactl_fd", "lookup_dcookie", "syslog", "vhangup",
    "iopl", "ioperm", "create_module", "get_kernel_syms", "query_module", "nfsservctl", "uselib",
    "_sysctl", "sysfs", "ustat", "vm86", "vm86old",
    /* file handles bypass path permission checks (the "shocker" escape) */
    "open_by_handle_at", "name_to_handle_at",
    /* the clock is shared with the host */
    "clock_settime", "clock_adjtime", "settimeofday", "adjtimex", "stime",
};

/* Namespace flags refused in clone(2); clone3 hides its flags in memory, so it gets ENOSYS. */
static const unsigned long CLONE_NS_FLAGS[] = {
    CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP,
};

/* personality(2) bits that weaken ASLR or memory protections. */
static const unsigned long PERSONALITY_BITS[] = {
    ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT, ADDR_LIMIT_3GB,
};

/* Terminal ioctls that push input into a terminal's queue (TIOCSTI fakes keystrokes; TIOCLINUX's
   subcommands paste the console selection): a process must not type into a shell it does not own. */
static const unsigned long DENIED_IOCTLS[] = {TIOCSTI, TIOCLINUX};

/* Socket families refused even when the network is allowed. */
static const int ALWAYS_DENIED_FAMILIES[] = {AF_PACKET, AF_NETLINK, AF_VSOCK, AF_BLUETOOTH, AF_KEY, AF_ALG};

static void check(int rc, const char *what) {
  if (rc < 0) {
    fprintf(stderr, "kiln-seccomp: %s: %s\n", what, strerror(-rc));
    exit(1);
  }
}

static void deny_name(scmp_filter_ctx ctx, const char *name, int err) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) return; /* not on this architecture */
  check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(err), nr, 0), name);
}

int main(int argc, char **argv) {
  int allow_network = 0;
  const char *out = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--allow-network") == 0) allow_network = 1;
    else if (!out && argv[i][0] != '-') out = argv[i];
    else {
      fprintf(stderr, "usage: kiln-seccomp [--allow-network] OUTPUT_PATH\n");
      return 2;
    }
  }
  if (!out) {
    fprintf(stderr, "usage: kiln-seccomp [--allow-network] OUTPUT_PATH\n");
    return 2;
  }

  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) {
    fprintf(stderr, "kiln-seccomp: seccomp_init failed\n");
    return 1;
  }
  /* A binary tree of syscall numbers instead of a linear list: every syscall the payload makes runs this
     filter, so its length matters (libseccomp 2.5+; older ones keep the list and still work). */
  (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  for (size_t i = 0; i < sizeof DENIED / sizeof *DENIED; i++) deny_name(ctx, DENIED[i], EPERM);
  deny_name(ctx, "clone3", ENOSYS);
  for (size_t i = 0; i < sizeof CLONE_NS_FLAGS / sizeof *CLONE_NS_FLAGS; i++)
    check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                           SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NS_FLAGS[i], CLONE_NS_FLAGS[i])),
          "clone");
  for (size_t i = 0; i < sizeof PERSONALITY_BITS / sizeof *PERSONALITY_BITS; i++)
    check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
                           SCMP_A0(SCMP_CMP_MASKED_EQ, PERSONALITY_BITS[i], PERSONALITY_BITS[i])),
          "personality");
  /* The kernel reads ioctl's request as a 32-bit int: compare the low 32 bits only, so high bits set in
     the 64-bit register cannot slip past the rule. */
  for (size_t i = 0; i < sizeof DENIED_IOCTLS / sizeof *DENIED_IOCTLS; i++)
    check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                           SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, DENIED_IOCTLS[i])),
          "ioctl");
  if (allow_network) {
    for (size_t i = 0; i < sizeof ALWAYS_DENIED_FAMILIES / sizeof *ALWAYS_DENIED_FAMILIES; i++)
      check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)ALWAYS_DENIED_FAMILIES[i])),
            "socket");
  } else {
    /* Only Unix sockets: the sandbox has no interface but lo anyway; this is belt and braces. */
    check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                           SCMP_A0(SCMP_CMP_NE, (scmp_datum_t)AF_UNIX)),
          "socket");
  }

  /* Write to a temporary name and rename, so a concurrent reader never sees half a program. */
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.%d.tmp", out, (int)getpid()) >= (int)sizeof tmp) {
    fprintf(stderr, "kiln-seccomp: path too long\n");
    return 2;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "kiln-seccomp: open %s: %s\n", tmp, strerror(errno));
    return 1;
  }
  check(seccomp_export_bpf(ctx, fd), "export");
  if (close(fd) != 0 || rename(tmp, out) != 0) {
    fprintf(stderr, "kiln-seccomp: write %s: %s\n", out, strerror(errno));
    unlink(tmp);
    return 1;
  }
  seccomp_release(ctx);
  return 0;
}
