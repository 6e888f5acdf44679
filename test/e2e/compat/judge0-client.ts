/**
 * A small Judge0 CE client written from Judge0's documentation (not from kiln's code): what a course
 * grader or an online judge does with `fetch`.
 */
export interface Judge0Submission {
  source_code: string;
  language_id: number;
  stdin?: string;
  expected_output?: string;
  [field: string]: unknown;
}

export class Judge0Client {
  constructor(
    private readonly baseUrl: string,
    private readonly authToken?: string,
  ) {}

  private async call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const res = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: { ...(this.authToken ? { 'X-Auth-Token': this.authToken } : {}), ...(body ? { 'Content-Type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }

  languages() {
    return this.call('GET', '/languages');
  }
  statuses() {
    return this.call('GET', '/statuses');
  }
  about() {
    return this.call('GET', '/about');
  }
  submit(submission: Judge0Submission, query = '') {
    return this.call('POST', `/submissions${query}`, submission);
  }
  get(token: string, query = '') {
    return this.call('GET', `/submissions/${token}${query}`);
  }
  delete(token: string) {
    return this.call('DELETE', `/submissions/${token}`);
  }
  submitBatch(submissions: Judge0Submission[], query = '') {
    return this.call('POST', `/submissions/batch${query}`, { submissions });
  }
  getBatch(tokens: string[], query = '') {
    return this.call('GET', `/submissions/batch?tokens=${tokens.join(',')}${query}`);
  }

  /** Polls until the submission left In Queue (1) and Processing (2), as Judge0's docs suggest. */
  async waitFor(token: string, query = ''): Promise<any> {
    for (let i = 0; i < 300; i += 1) {
      const res = await this.get(token, query);
      if (res.body?.status?.id > 2) return res.body;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`submission ${token} did not finish`);
  }
}
