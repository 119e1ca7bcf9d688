// The seed's Lambda handler (section 3 of the design it replaces), kept verbatim,
// unindented as published, except for the lines marked "FIX n" below. Its
// routeKey dispatch and its SDK calls are unchanged: tidings serves it as the
// HTTP integration of $connect, $disconnect and sendNotification (serve.mjs).
//
// FIX 1: $disconnect has no query string and no body, so JSON.parse(undefined)
//        threw; the user id now also comes from the authorizer (tidings sets
//        requestContext.authorizer.principalId for every route).
// FIX 2: the management endpoint had no scheme; the SDK needs one (https on a
//        real deployment, http for the local test server).
// FIX 3: the user query returned the user's notifications too (same pk); only
//        connection items (those without a message) are posted to.
// FIX 4: items store the connection id in `sk`; the code read `connectionId`,
//        an attribute it never wrote.
// FIX 5: SDK v3 errors carry $metadata.httpStatusCode and name "GoneException",
//        not statusCode, so stale connections were never cleaned up.
import {
DynamoDBClient,
PutItemCommand,
DeleteItemCommand,
QueryCommand,
} from "@aws-sdk/client-dynamodb";
import { ApiGatewayManagementApiClient, PostToConnectionCommand } from "@aws-sdk/client-apigatewaymanagementapi";
import { unmarshall } from "@aws-sdk/util-dynamodb";
const dynamoDbClient = new DynamoDBClient({});
let apiGatewayClient;
const TableName = "notifications";
// Main handler
export const handler = async (event) => {
const routeKey = event.requestContext.routeKey;
const connectionId = event.requestContext.connectionId;
const userId = event.queryStringParameters?.userId || (event.body ? JSON.parse(event.body).userId : undefined) || event.requestContext.authorizer?.principalId; // FIX 1
if (!apiGatewayClient) {
apiGatewayClient = new ApiGatewayManagementApiClient({
endpoint: `${process.env.MANAGEMENT_SCHEME ?? "https"}://${event.requestContext.domainName}/${event.requestContext.stage}`, // FIX 2
});
}
try {
if (routeKey === "$connect") {
return await handleConnect(connectionId, userId);
} else if (routeKey === "$disconnect") {
return await handleDisconnect(connectionId, userId);
} else if (routeKey === "sendNotification") {
const { message } = JSON.parse(event.body);
return await handleSendNotification(userId, message);
} else {
return { statusCode: 400, body: "Invalid route" };
}
} catch (error) {
console.error("Error processing request:", error);
return { statusCode: 500, body: "Internal server error" };
}
};
// Handle connection: store connectionId in DynamoDB
async function handleConnect(connectionId, userId) {
const params = {
TableName,
Item: {
pk: { S: userId },
sk: { S: connectionId },
},
};
await dynamoDbClient.send(new PutItemCommand(params));
return { statusCode: 200, body: "Connected" };
}
// Handle disconnection: delete connectionId from DynamoDB
async function handleDisconnect(connectionId, userId) {
const params = {
TableName,
Key: {
pk: { S: userId },
sk: { S: connectionId },
},
};
await dynamoDbClient.send(new DeleteItemCommand(params));
return { statusCode: 200, body: "Disconnected" };
}
// Send notification: store in DynamoDB and push via WebSocket
async function handleSendNotification(userId, message) {
const notificationId = new Date().toISOString();
// Step 1: Store the notification in DynamoDB
await dynamoDbClient.send(
new PutItemCommand({
TableName,
Item: {
pk: { S: userId },
sk: { S: notificationId },
message: { S: message },
timestamp: { N: `${Date.now()}` },
},
})
);
// Step 2: Retrieve all connectionIds for the user
const connections = await dynamoDbClient.send(
new QueryCommand({
TableName,
KeyConditionExpression: "pk = :userId",
ExpressionAttributeValues: {
":userId": { S: userId },
},
})
);
const connectionItems = connections.Items.map((item) => unmarshall(item)).filter((item) => item.message === undefined); // FIX 3
// Step 3: Send notification to all connectionIds
const postCalls = connectionItems.map(async ({ sk: connectionId }) => { // FIX 4
try {
await apiGatewayClient.send(
new PostToConnectionCommand({
ConnectionId: connectionId,
Data: JSON.stringify({ notificationId, message }),
})
);
} catch (e) {
if (e.$metadata?.httpStatusCode === 410 || e.name === "GoneException") { // FIX 5
// Remove stale connection
await dynamoDbClient.send(
new DeleteItemCommand({
TableName,
Key: {
pk: { S: userId },
sk: { S: connectionId },
},
})
);
}
}
});
await Promise.all(postCalls);
return { statusCode: 200, body: "Notification sent" };
}
