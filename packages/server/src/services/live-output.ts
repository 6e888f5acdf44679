/** One chunk of a running job's output, numbered so a watcher can join late without gaps or repeats. */
export interface OutputChunk {
  seq: number;
  stream: 'stdout' | 'stderr';
  data: string;
}

interface JobOutput {
  chunks: OutputChunk[];
  bytes: number;
  nextSeq: number;
  endedAt?: number;
}

/**
 * The recent output of running jobs, kept in memory so a watcher that connects after the job started
 * (`kiln run` connects right after submitting) still sees every chunk from the first. Bounded per job,
 * and forgotten a while after the job ends (its stdout and stderr artifacts hold the whole output).
 * Per replica: on several replicas a watcher sees what reached its own replica.
 */
export class LiveOutput {
  private readonly jobs = new Map<string, JobOutput>();

  constructor(
    private readonly maxBytesPerJob = 1024 * 1024,
    private readonly keepAfterEndMs = 60_000,
  ) {}

  append(jobId: string, stream: 'stdout' | 'stderr', data: string): OutputChunk {
    let job = this.jobs.get(jobId);
    if (!job) {
      job = { chunks: [], bytes: 0, nextSeq: 1 };
      this.jobs.set(jobId, job);
    }
    const chunk = { seq: job.nextSeq++, stream, data };
    if (job.bytes + data.length <= this.maxBytesPerJob) {
      job.chunks.push(chunk);
      job.bytes += data.length;
    }
    return chunk;
  }

  /** Chunks after `afterSeq`, in order. */
  since(jobId: string, afterSeq = 0): OutputChunk[] {
    return (this.jobs.get(jobId)?.chunks ?? []).filter((c) => c.seq > afterSeq);
  }

  /** Marks a job ended; its output is dropped later, and old ended jobs are swept now. */
  end(jobId: string, nowMs = Date.now()): void {
    const job = this.jobs.get(jobId);
    if (job) job.endedAt = nowMs;
    for (const [id, j] of this.jobs) {
      if (j.endedAt !== undefined && nowMs - j.endedAt > this.keepAfterEndMs) this.jobs.delete(id);
    }
  }
}
