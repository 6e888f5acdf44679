/** One server-sent event. */
export interface ServerSentEvent {
  event: string;
  data: string;
  id?: string;
}

/** The largest event (or line) the parser holds: a stream that never ends a line cannot grow it without bound. */
export const MAX_EVENT_CHARS = 16 * 1024 * 1024;

/** Parses a text/event-stream body into events as they arrive. */
export async function* parseEventStream(body: ReadableStream<Uint8Array>, maxEventChars = MAX_EVENT_CHARS): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  let event = 'message';
  let data: string[] = [];
  let id: string | undefined;
  let dataChars = 0;
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      if (buffer.length + dataChars > maxEventChars && buffer.indexOf('\n') < 0) {
        throw new Error(`an event of the stream is over ${maxEventChars} characters`);
      }
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, '');
        buffer = buffer.slice(newline + 1);
        if (line === '') {
          if (data.length > 0) yield { event, data: data.join('\n'), ...(id !== undefined ? { id } : {}) };
          event = 'message';
          data = [];
          dataChars = 0;
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') {
          event = value;
        } else if (field === 'data') {
          dataChars += value.length;
          if (dataChars > maxEventChars) throw new Error(`an event of the stream is over ${maxEventChars} characters`);
          data.push(value);
        } else if (field === 'id') {
          id = value;
        }
      }
    }
  } finally {
    reader.releaseLock();
  }
}
