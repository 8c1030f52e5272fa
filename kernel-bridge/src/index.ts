export * from './wire';
export * from './client';
export * from './launcher';
export * from './server';
export * from './runner';
