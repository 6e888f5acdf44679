import { readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ

/**
 * Every descendant of this process but the subtree of `exclude`, by pid: its command line (the first
 * words) and the CPU seconds it has used so far.
 */
export function descendantsCpu(exclude = 0) {
  const out = new Map();
  const walk = (pid) => {
    let children = [];
    try {
      children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return;
    }
    for (const child of children) {
      if (child === exclude) continue;
      try {
        const fields = readFileSync(`/proc/${child}/stat`, 'utf8').split(') ')[1].split(' ');
        const cmd = readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0').filter(Boolean).slice(0, 3).join(' ').slice(0, 60);
        out.set(child, { cmd, seconds: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND });
      } catch {
        // gone
      }
      walk(child);
    }
  };
  walk(process.pid);
  return out;
}
