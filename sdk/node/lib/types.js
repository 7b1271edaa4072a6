/** The API's shapes, named from the types generated out of `/openapi.json`. */
export {};
