"""ModemManager's SMS interfaces for python-dbusmock's `modemmanager` template.

The shipped template (python-dbusmock 0.38) has the ModemManager root object, an
ObjectManager and `AddSimpleModem` (a modem with `Modem`, `Modem3gpp`, a SIM), but no
messaging. This file is loaded into that mock with dbusmock's own `AddTemplate`, and adds what
ModemManager's D-Bus API reference describes for texts:

- on the modem, the properties the template leaves out (`Manufacturer`, `OwnNumbers`,
  `EquipmentIdentifier`, `DeviceIdentifier`, `StateFailedReason`, `Modem3gpp`
  `RegistrationState`) and `org.freedesktop.ModemManager1.Modem.Messaging`: `Create(a{sv})`,
  `List()`, `Delete(o)`, property `Messages`, signals `Added(o, b)` and `Deleted(o)`;
- `org.freedesktop.ModemManager1.Sms` objects under `/org/freedesktop/ModemManager1/SMS/`, with
  `Send()` and `Store(u)` and the properties `State`, `PduType`, `Number`, `Text`, `Data`,
  `Timestamp`, `DeliveryState`, `MessageReference`, `DeliveryReportRequest`, `Storage`;
- on the SIM, `Sim.SendPin(s)`.

Test-only methods on the root object's `org.freedesktop.DBus.Mock` interface drive it:
`AddMessaging`, `ReceiveSms`, `ReceiveSmsInParts` + `FinishReceiving`,
`ReceiveStatusReport`, `FailNextSend`, `SetSimPin`, `SentMessages`, `SmsPaths`.
"""

import dbus

from dbusmock import MOCK_IFACE, mockobject

BUS_NAME = "org.freedesktop.ModemManager1"
MAIN_OBJ = "/org/freedesktop/ModemManager1"
MAIN_IFACE = "org.freedesktop.ModemManager1"
SYSTEM_BUS = True
IS_OBJECT_MANAGER = False

MODEM_IFACE = "org.freedesktop.ModemManager1.Modem"
MODEM_3GPP_IFACE = "org.freedesktop.ModemManager1.Modem.Modem3gpp"
MESSAGING_IFACE = "org.freedesktop.ModemManager1.Modem.Messaging"
SMS_IFACE = "org.freedesktop.ModemManager1.Sms"
SIM_IFACE = "org.freedesktop.ModemManager1.Sim"
SMS_PREFIX = "/org/freedesktop/ModemManager1/SMS/"

# MMSmsState
SMS_STATE_UNKNOWN = 0
SMS_STATE_STORED = 1
SMS_STATE_RECEIVING = 2
SMS_STATE_RECEIVED = 3
SMS_STATE_SENT = 5
# MMSmsPduType
PDU_DELIVER = 1
PDU_SUBMIT = 2
PDU_STATUS_REPORT = 3
# MMSmsDeliveryState
DELIVERY_STATE_UNKNOWN = 0x100
# MMSmsStorage
STORAGE_UNKNOWN = 0
STORAGE_ME = 2
# MMModemLock
LOCK_NONE = 1
LOCK_SIM_PIN = 2
# MMModemState
STATE_LOCKED = 2
STATE_REGISTERED = 8

# The mock's memory, shared by the methods below (one mock per process).
STATE = {
    "next_sms": 1,
    "next_reference": 1,
    "modem": None,
    "sent": [],
    "send_failures": [],
    "pin": None,
    "parts": {},
}


def load(mock, parameters):
    """Nothing to set up until a modem exists: see AddMessaging."""


def _main():
    return mockobject.objects[MAIN_OBJ]


def _modem():
    path = STATE["modem"]
    if path is None:
        raise dbus.exceptions.DBusException(
            "call AddMessaging first", name="org.freedesktop.DBus.Mock.NameError"
        )
    return mockobject.objects[path]


def _sms_paths():
    return dbus.Array(
        sorted((p for p in mockobject.objects if p.startswith(SMS_PREFIX)), key=lambda p: int(p[len(SMS_PREFIX):])),
        signature="o",
    )


def _update_messages():
    _modem().UpdateProperties(MESSAGING_IFACE, {"Messages": _sms_paths()})


def _new_sms(props, received):
    """Exports an Sms object with `props` and announces it with Messaging.Added."""
    path = f"{SMS_PREFIX}{STATE['next_sms']}"
    STATE["next_sms"] += 1
    full = {
        "State": dbus.UInt32(SMS_STATE_UNKNOWN),
        "PduType": dbus.UInt32(PDU_SUBMIT),
        "Number": dbus.String(""),
        "Text": dbus.String(""),
        "Data": dbus.Array([], signature="y"),
        "SMSC": dbus.String(""),
        "Class": dbus.Int32(-1),
        "TeleserviceId": dbus.UInt32(0),
        "ServiceCategory": dbus.UInt32(0),
        "DeliveryReportRequest": dbus.Boolean(False),
        "MessageReference": dbus.UInt32(0),
        "Timestamp": dbus.String(""),
        "DischargeTimestamp": dbus.String(""),
        "DeliveryState": dbus.UInt32(DELIVERY_STATE_UNKNOWN),
        "Storage": dbus.UInt32(STORAGE_UNKNOWN),
    }
    full.update(props)
    _main().AddObject(
        path,
        SMS_IFACE,
        full,
        [
            ("Send", "", "", _sms_send),
            ("Store", "u", "", _sms_store),
        ],
    )
    _update_messages()
    _modem().EmitSignal(MESSAGING_IFACE, "Added", "ob", [dbus.ObjectPath(path), dbus.Boolean(received)])
    return path


# --- Modem.Messaging ---------------------------------------------------------------------------


def _messaging_create(_modem_obj, properties):
    number = properties.get("number")
    text = properties.get("text")
    if not number or (text is None and properties.get("data") is None):
        raise dbus.exceptions.DBusException(
            "Creating SMS needs 'number' and 'text' or 'data'",
            name="org.freedesktop.ModemManager1.Error.Core.InvalidArgs",
        )
    props = {
        "PduType": dbus.UInt32(PDU_SUBMIT),
        "Number": dbus.String(number),
        "Text": dbus.String(text or ""),
        "DeliveryReportRequest": dbus.Boolean(bool(properties.get("delivery-report-request", False))),
    }
    return dbus.ObjectPath(_new_sms(props, False))


def _messaging_list(_modem_obj):
    return _sms_paths()


def _messaging_delete(modem_obj, path):
    if path not in mockobject.objects or not str(path).startswith(SMS_PREFIX):
        raise dbus.exceptions.DBusException(
            f"No SMS found with path '{path}'", name="org.freedesktop.ModemManager1.Error.Core.NotFound"
        )
    _main().RemoveObject(path)
    _update_messages()
    modem_obj.EmitSignal(MESSAGING_IFACE, "Deleted", "o", [dbus.ObjectPath(path)])


# --- Sms ---------------------------------------------------------------------------------------


def _sms_send(sms_obj):
    props = sms_obj.props[SMS_IFACE]
    if int(props["PduType"]) != PDU_SUBMIT:
        raise dbus.exceptions.DBusException(
            "This SMS was not created to be sent", name="org.freedesktop.ModemManager1.Error.Core.Failed"
        )
    if STATE["send_failures"]:
        name, message = STATE["send_failures"].pop(0)
        raise dbus.exceptions.DBusException(message, name=name)
    reference = STATE["next_reference"]
    STATE["next_reference"] = reference % 255 + 1
    STATE["sent"].append(
        (
            str(props["Number"]),
            str(props["Text"]),
            bool(props["DeliveryReportRequest"]),
            dbus.UInt32(reference),
        )
    )
    sms_obj.UpdateProperties(
        SMS_IFACE,
        {
            "State": dbus.UInt32(SMS_STATE_SENT),
            "MessageReference": dbus.UInt32(reference),
        },
    )


def _sms_store(sms_obj, storage):
    sms_obj.UpdateProperties(
        SMS_IFACE,
        {"State": dbus.UInt32(SMS_STATE_STORED), "Storage": dbus.UInt32(storage or STORAGE_ME)},
    )


# --- Sim ---------------------------------------------------------------------------------------


def _sim_send_pin(_sim_obj, pin):
    if STATE["pin"] is None or pin != STATE["pin"]:
        raise dbus.exceptions.DBusException(
            "Incorrect password", name="org.freedesktop.ModemManager1.Error.MobileEquipment.IncorrectPassword"
        )
    STATE["pin"] = None
    _modem().UpdateProperties(
        MODEM_IFACE,
        {"UnlockRequired": dbus.UInt32(LOCK_NONE), "State": dbus.Int32(STATE_REGISTERED)},
    )


# --- test-only methods -------------------------------------------------------------------------


@dbus.service.method(MOCK_IFACE, in_signature="ss", out_signature="")
def AddMessaging(self, modem_path, own_number):
    """Gives the modem at modem_path (e.g. from AddSimpleModem) what the template lacks."""
    STATE["modem"] = str(modem_path)
    modem = mockobject.objects[modem_path]
    modem.AddProperties(
        MODEM_IFACE,
        {
            "Manufacturer": dbus.String("Airtext Test"),
            "EquipmentIdentifier": dbus.String("490154203237518"),
            "DeviceIdentifier": dbus.String("4f3e8b2a9d1c"),
            "OwnNumbers": dbus.Array([own_number], signature="s"),
            "StateFailedReason": dbus.UInt32(0),
        },
    )
    modem.AddProperties(MODEM_3GPP_IFACE, {"RegistrationState": dbus.UInt32(4)})
    modem.AddProperties(
        MESSAGING_IFACE,
        {
            "Messages": dbus.Array([], signature="o"),
            "SupportedStorages": dbus.Array([dbus.UInt32(STORAGE_ME)], signature="u"),
            "DefaultStorage": dbus.UInt32(STORAGE_ME),
        },
    )
    modem.AddMethods(
        MESSAGING_IFACE,
        [
            ("Create", "a{sv}", "o", _messaging_create),
            ("List", "", "ao", _messaging_list),
            ("Delete", "o", "", _messaging_delete),
        ],
    )
    sim_path = modem.props[MODEM_IFACE].get("Sim")
    if sim_path and sim_path in mockobject.objects:
        mockobject.objects[sim_path].AddMethods(SIM_IFACE, [("SendPin", "s", "", _sim_send_pin)])


@dbus.service.method(MOCK_IFACE, in_signature="sss", out_signature="o")
def ReceiveSms(self, number, text, timestamp):
    """A whole text arrives (State received), announced with Added(path, true)."""
    props = {
        "State": dbus.UInt32(SMS_STATE_RECEIVED),
        "PduType": dbus.UInt32(PDU_DELIVER),
        "Number": dbus.String(number),
        "Text": dbus.String(text),
        "Timestamp": dbus.String(timestamp),
        "Storage": dbus.UInt32(STORAGE_ME),
    }
    return dbus.ObjectPath(_new_sms(props, True))


@dbus.service.method(MOCK_IFACE, in_signature="sss", out_signature="o")
def ReceiveSmsInParts(self, number, text, timestamp):
    """The first part of a multi-part text arrives: Added(path, true) with State receiving
    and only part of the text; FinishReceiving completes it."""
    props = {
        "State": dbus.UInt32(SMS_STATE_RECEIVING),
        "PduType": dbus.UInt32(PDU_DELIVER),
        "Number": dbus.String(number),
        "Text": dbus.String(text[: len(text) // 2]),
        "Timestamp": dbus.String(timestamp),
        "Storage": dbus.UInt32(STORAGE_ME),
    }
    path = _new_sms(props, True)
    STATE["parts"][path] = text
    return dbus.ObjectPath(path)


@dbus.service.method(MOCK_IFACE, in_signature="o", out_signature="")
def FinishReceiving(self, path):
    """The last part of the text at path arrives: the whole text, State received."""
    text = STATE["parts"].pop(str(path))
    mockobject.objects[path].UpdateProperties(
        SMS_IFACE, {"Text": dbus.String(text), "State": dbus.UInt32(SMS_STATE_RECEIVED)}
    )


@dbus.service.method(MOCK_IFACE, in_signature="usu", out_signature="o")
def ReceiveStatusReport(self, reference, number, delivery_state):
    """The network's status report on the sent text with MessageReference `reference`."""
    props = {
        "State": dbus.UInt32(SMS_STATE_RECEIVED),
        "PduType": dbus.UInt32(PDU_STATUS_REPORT),
        "Number": dbus.String(number),
        "MessageReference": dbus.UInt32(reference),
        "DeliveryState": dbus.UInt32(delivery_state),
        "Timestamp": dbus.String("2025-03-05T14:30:00+00:00"),
        "DischargeTimestamp": dbus.String("2025-03-05T14:30:05+00:00"),
        "Storage": dbus.UInt32(STORAGE_ME),
    }
    return dbus.ObjectPath(_new_sms(props, True))


@dbus.service.method(MOCK_IFACE, in_signature="ss", out_signature="")
def FailNextSend(self, error_name, message):
    """The next Sms.Send fails with this D-Bus error."""
    STATE["send_failures"].append((str(error_name), str(message)))


@dbus.service.method(MOCK_IFACE, in_signature="s", out_signature="")
def SetSimPin(self, pin):
    """The SIM asks for `pin` (UnlockRequired sim-pin, State locked) until it is sent."""
    STATE["pin"] = str(pin)
    _modem().UpdateProperties(
        MODEM_IFACE,
        {"UnlockRequired": dbus.UInt32(LOCK_SIM_PIN), "State": dbus.Int32(STATE_LOCKED)},
    )


@dbus.service.method(MOCK_IFACE, in_signature="", out_signature="a(ssbu)")
def SentMessages(self):
    """Every text Sms.Send sent: (number, text, delivery-report-request, MessageReference)."""
    return dbus.Array(STATE["sent"], signature="(ssbu)")


@dbus.service.method(MOCK_IFACE, in_signature="", out_signature="ao")
def SmsPaths(self):
    """The Sms objects that exist now."""
    return _sms_paths()
