// CPU time and memory of a process tree from /proc, for the benchmarks' "Node CPU per job" and RSS.
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

function stat(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    const close = text.lastIndexOf(')');
    const comm = text.slice(text.indexOf('(') + 1, close);
    const f = text.slice(close + 2).split(' ');
    return { pid, comm, ppid: Number(f[1]), cpuTicks: Number(f[11]) + Number(f[12]) };
  } catch {
    return undefined;
  }
}

/** The Node processes of the tree under `rootPid` (itself included): the control plane and its runner. */
export function nodeProcesses(rootPid) {
  const all = readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map((n) => stat(Number(n))).filter(Boolean);
  const tree = new Set([rootPid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) if (!tree.has(p.pid) && tree.has(p.ppid)) (tree.add(p.pid), (grew = true));
  }
  return all.filter((p) => tree.has(p.pid) && p.comm === 'node');
}

/** CPU milliseconds (user + system, own threads only: sandboxes are not counted) of those processes. */
export function nodeCpuMs(rootPid) {
  return nodeProcesses(rootPid).reduce((sum, p) => sum + (p.cpuTicks * 1000) / TICKS_PER_SECOND, 0);
}

/** Resident memory of one process, in bytes. */
export function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** `uptime`'s load averages, to print beside the numbers (the machine is shared). */
export function loadAverage() {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}
