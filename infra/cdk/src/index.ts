export * from './plan';
export * from './turnstile';
