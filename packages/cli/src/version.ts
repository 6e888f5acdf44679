/** The CLI's version; the packed build checks it equals package.json's. */
export const VERSION = '0.1.0';
