export * from './server';
export * from './ws-protocol';
