/* What agents' own sandboxes do first, run inside paperclip@.service by
 * tests/system/run.sh (f-sandbox) to show the unit's hardening allows it:
 *   landlock      landlock_create_ruleset (ABI query and a real ruleset),
 *                 landlock_add_rule... then landlock_restrict_self (Codex)
 *   seccomp       seccomp(SECCOMP_SET_MODE_FILTER) with an allow-all filter
 *                 (Chromium's seccomp-bpf sandbox, Codex)
 *   userns        unshare(CLONE_NEWUSER), then uid_map/gid_map (bubblewrap,
 *                 Chromium's namespace sandbox)
 *   namespaces    unshare(CLONE_NEWNS|NEWPID|NEWNET|NEWIPC|NEWUTS) inside it
 *   mount         a private tmpfs in that mount namespace, chroot into it
 *                 (bubblewrap's --tmpfs, Chromium's chroot)
 *   proc          a new /proc for the new PID namespace (bubblewrap --proc)
 * One line per step, "PROBE <step> ok <detail>" or "PROBE <step> FAILED
 * <errno name>: <why>"; exit 0 only when every step passed. Each step runs
 * in a child of its own, so one restriction does not hide the next. Built
 * statically at test time (gcc -static), so the root needs no compiler. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int report(const char *step, int rc, const char *detail) {
    if (rc == 0)
        printf("PROBE %s ok %s\n", step, detail);
    else
        printf("PROBE %s FAILED %s: %s\n", step, strerrorname_np(errno) ? strerrorname_np(errno) : "?", detail);
    fflush(stdout);
    return rc == 0 ? 0 : 1;
}

static int landlock(void) {
    char d[96];
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    snprintf(d, sizeof d, "landlock_create_ruleset(VERSION) = %ld", abi);
    if (report("landlock-abi", abi > 0 ? 0 : -1, d)) return 1;
    struct landlock_ruleset_attr attr = {.handled_access_fs = LANDLOCK_ACCESS_FS_WRITE_FILE};
    int fd = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    if (report("landlock-ruleset", fd >= 0 ? 0 : -1, "landlock_create_ruleset(write_file)")) return 1;
    struct landlock_path_beneath_attr pb = {.allowed_access = LANDLOCK_ACCESS_FS_WRITE_FILE};
    pb.parent_fd = open("/tmp", O_PATH | O_CLOEXEC);
    long r = syscall(SYS_landlock_add_rule, fd, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
    if (report("landlock-add-rule", r == 0 ? 0 : -1, "landlock_add_rule(/tmp)")) return 1;
    /* A file outside /tmp that can be written now ($HOME, the unit's
     * writable state directory), and cannot once the ruleset applies. */
    char file[512];
    snprintf(file, sizeof file, "%s/.landlock-probe", getenv("HOME") ? getenv("HOME") : ".");
    int w = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (report("landlock-before", w >= 0 ? 0 : -1, file)) return 1;
    close(w);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    r = syscall(SYS_landlock_restrict_self, fd, 0);
    if (report("landlock-restrict", r == 0 ? 0 : -1, "landlock_restrict_self")) return 1;
    w = open(file, O_WRONLY | O_CLOEXEC);
    int denied = w < 0 && errno == EACCES;
    unlink(file); /* removing is not a handled access */
    errno = EACCES;
    return report("landlock-enforced", denied ? 0 : -1,
                  denied ? "writing it is refused now (EACCES)" : "writing it is NOT refused");
}

static int seccomp_filter(void) {
    struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog prog = {.len = 1, .filter = allow};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
    return report("seccomp", r == 0 ? 0 : -1, "seccomp(SECCOMP_SET_MODE_FILTER, allow-all)");
}

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int userns(void) {
    char map[64];
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (report("userns", unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")) return 1;
    snprintf(map, sizeof map, "0 %u 1", uid);
    if (report("uid_map", write_file("/proc/self/uid_map", map), map)) return 1;
    write_file("/proc/self/setgroups", "deny");
    snprintf(map, sizeof map, "0 %u 1", gid);
    if (report("gid_map", write_file("/proc/self/gid_map", map), map)) return 1;
    if (report("namespaces", unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS),
               "unshare(NEWNS|NEWPID|NEWNET|NEWIPC|NEWUTS) in the user namespace"))
        return 1;
    pid_t p = fork(); /* the first child is PID 1 of the new PID namespace */
    if (p < 0) return report("fork", -1, "fork into the new PID namespace");
    if (p == 0) {
        int bad = 0;
        bad |= report("mount-private", mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "mount --make-rprivate /");
        bad |= report("mount-tmpfs", mount("tmpfs", "/tmp", "tmpfs", 0, "mode=0700"), "mount -t tmpfs tmpfs /tmp");
        mkdir("/tmp/proc", 0700);
        bad |= report("mount-proc", mount("proc", "/tmp/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL),
                      "mount -t proc proc (the new PID namespace's)");
        bad |= report("chroot", chroot("/tmp") == 0 && chdir("/") == 0 ? 0 : -1, "chroot into the tmpfs");
        _exit(bad);
    }
    int st = 0;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

static int in_child(int (*step)(void)) {
    pid_t p = fork();
    if (p == 0) _exit(step());
    int st = 0;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

int main(void) {
    int bad = 0;
    printf("PROBE id uid=%u gid=%u\n", getuid(), getgid());
    fflush(stdout); /* before the forks, or each child prints it again */
    bad |= in_child(landlock);
    bad |= in_child(seccomp_filter);
    bad |= in_child(userns);
    printf("PROBE result %s\n", bad ? "FAILED" : "ok");
    return bad;
}
