export * from './notebook';
export * from './runner';
